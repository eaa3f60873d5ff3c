"""Running ffmpeg: the static binary imageio-ffmpeg ships, always with argument lists, errors as one line.

File names never go through a shell or into a filter graph unescaped: inputs
and outputs are separate arguments, and anything placed inside a filter
argument goes through `filter_escape`.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from assetline.errors import AssetlineError, BadInputError


@cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (imageio-ffmpeg's static build: libx264, libass, loudnorm)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], subject: str | Path, bad_input: bool = False) -> subprocess.CompletedProcess:
    """Run `ffmpeg -hide_banner -nostdin ARGS`; a failure raises one line naming `subject`.

    `bad_input=True` says a failure means the input is at fault (BadInputError),
    else it is reported as a processing error.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        cause = lines[-1] if lines else f"exit code {proc.returncode}"
        error = BadInputError if bad_input else AssetlineError
        raise error(subject, f"ffmpeg failed: {cause}")
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
