"""Running ffmpeg: the static binary imageio-ffmpeg ships, always with argument lists, errors as one line.

File names never go through a shell or into a filter graph unescaped: inputs
and outputs are separate arguments, and anything placed inside a filter
argument goes through `filter_escape`.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from assetline.errors import AssetlineError, BadInputError, OutputError
from assetline.lifetime import die_with_parent


@cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (imageio-ffmpeg's static build: libx264, libass, loudnorm)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ffmpeg reports a failure to write its output with the C library's words for the errno.
# These can only be about the output (nothing is written to an input), so the input is
# never blamed for a full disk or a read-only folder.
_OUTPUT_CAUSES = (
    ("No space left on device", "no space left on the output device"),
    ("Disk quota exceeded", "no space left on the output device (disk quota exceeded)"),
    ("Read-only file system", "output folder is not writable (read-only file system)"),
)
# Progress and summary lines say nothing about the cause.
_NOT_A_CAUSE = ("Conversion failed!", "frame=", "size=", "video:", "Error opening output files")


def output_failure(stderr: str) -> str | None:
    """The output-side cause in ffmpeg's stderr (disk full, read-only, not writable), else None."""
    for line in stderr.splitlines():
        for words, cause in _OUTPUT_CAUSES:
            if words in line:
                return cause
        if "Permission denied" in line and ("[out#" in line or "Error opening output" in line):
            return "output folder is not writable (permission denied)"
    return None


def _cause(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_NOT_A_CAUSE) and "] video:" not in line]
    return (meaningful or lines or [f"exit code {returncode}"])[-1]


def run_ffmpeg(
    args: list[str], subject: str | Path, bad_input: bool = False, output: str | Path | None = None
) -> subprocess.CompletedProcess:
    """Run `ffmpeg -hide_banner -nostdin ARGS`; a failure raises one line naming `subject`.

    `bad_input=True` says a failure means the input is at fault (BadInputError),
    else it is reported as a processing error. Either way, a failure to write the
    output (disk full, read-only or unwritable folder) is an `OutputError` naming
    `output` (default: the last argument, ffmpeg's output file).
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", preexec_fn=die_with_parent())
    if proc.returncode != 0:
        written = output if output is not None else (args[-1] if args and not args[-1].startswith("-") else subject)
        output_cause = output_failure(proc.stderr)
        if output_cause:
            raise OutputError(written, output_cause)
        error = BadInputError if bad_input else AssetlineError
        raise error(subject, f"ffmpeg failed: {_cause(proc.stderr, proc.returncode)}")
    return proc


def filter_escape(value: str) -> str:
    """Escape a value for use inside an ffmpeg filter argument (e.g. a subtitles file name).

    Two levels: the option value (`\\`, `'`, `:`) and the filter graph (`\\`, `'`, `[`, `]`, `,`, `;`).
    """
    level1 = value.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
    out = []
    for ch in level1:
        if ch in "\\'[],;":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
