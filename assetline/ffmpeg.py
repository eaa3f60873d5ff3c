"""Running ffmpeg: the static binary imageio-ffmpeg ships, command lines built by ffmpeg-python, errors as one line.

Graphs are ffmpeg-python graphs (`ffmpeg_python.input(...).filter(...).output(...)`):
it escapes every filter option twice, for the option value and for the graph,
and passes file names as arguments of their own, so no name reaches a shell or
a filter graph unescaped. What a failure means is read by `assetline.failures`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

# The ffmpeg-python library (import name `ffmpeg`), not this module: imports are absolute.
import ffmpeg as ffmpeg_python

from assetline.failures import ffmpeg_error
from assetline.lifetime import die_with_parent

if not hasattr(ffmpeg_python, "filter_multi_output"):  # `python assetline/x.py` puts this folder first on the path
    raise ImportError(f"`import ffmpeg` found {ffmpeg_python.__file__}, not the ffmpeg-python library")
OutputStream = ffmpeg_python.nodes.OutputStream  # what `.output(...)` and `merge_outputs(...)` return

# Every run: no banner, never read the terminal, overwrite (outputs are our own fresh temporaries).
_EVERY_RUN = ("-hide_banner", "-nostdin", "-y")


@cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (imageio-ffmpeg's static build: libx264, libass, loudnorm)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class Filter:
    """One filter, as ffmpeg-python applies it and as the manifest records it (`str()`: "hqdn3d=4:3:6:4.5").

    `values` are positional and must be plain numbers or words (ffmpeg-python
    0.2.0 escapes positional values twice); anything else, a path above all,
    goes in `options`, which it escapes once per level as ffmpeg expects.
    """

    name: str
    values: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        params = [*map(str, self.values), *(f"{key}={value}" for key, value in self.options.items())]
        return f"{self.name}={':'.join(params)}" if params else self.name


def chain(stream: Any, filters: Sequence[Filter]) -> Any:
    """`stream` through `filters` in order (an ffmpeg-python stream)."""
    for f in filters:
        stream = stream.filter(f.name, *f.values, **f.options)
    return stream


def command(graph: OutputStream, *global_options: str) -> list[str]:
    """The argument list for an ffmpeg-python output (or `merge_outputs`): our binary, `-hide_banner
    -nostdin -y`, `global_options` (`-nostats`, `-loglevel error`, `-copyts`), then the graph's own."""
    return ffmpeg_python.compile(graph, cmd=[ffmpeg_exe(), *_EVERY_RUN, *global_options])


def start_ffmpeg(argv: list[str], **popen: object) -> subprocess.Popen:
    """Start `argv` (from `command`) as a child that dies with us, even on SIGKILL (see `assetline.lifetime`)."""
    return subprocess.Popen(argv, preexec_fn=die_with_parent(), **popen)  # type: ignore[arg-type]


def run_ffmpeg(
    spec: OutputStream | Sequence[str],
    subject: str | Path,
    bad_input: bool = False,
    output: str | Path | None = None,
    global_options: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Run an ffmpeg-python graph (or `ffmpeg -hide_banner -nostdin -y ARGS`); a failure raises one line naming `subject`.

    `bad_input=True` says a failure means the input is at fault (BadInputError),
    else it is reported as a processing error. Either way, a failure to write the
    output (disk full, read-only or unwritable folder) is an `OutputError` naming
    `output` (default: the last argument, ffmpeg's output file).
    """
    if isinstance(spec, OutputStream):
        argv = command(spec, *global_options)
    else:
        argv = [ffmpeg_exe(), *_EVERY_RUN, *global_options, *spec]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", preexec_fn=die_with_parent())
    if proc.returncode != 0:
        written = output if output is not None else (argv[-1] if not argv[-1].startswith("-") else subject)
        otherwise = f"exit code {proc.returncode}"
        raise ffmpeg_error(proc.stderr, subject, output=written, bad_input=bad_input, otherwise=otherwise)
    return proc
