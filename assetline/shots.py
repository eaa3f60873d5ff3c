"""Shot changes in footage, for cue timing: ffmpeg's scene score, one cheap decode (small frames, no audio).

A frame whose scene score (ffmpeg's `select` filter: how much it differs from the
frame before, 0..1) is above the threshold starts a new shot; its time is a cut.
Free of Prefect; the graph is built with ffmpeg-python, as `assetline.ffmpeg` does.
"""

from __future__ import annotations

import re
from pathlib import Path

import ffmpeg as ffmpeg_python

from assetline.ffmpeg import run_ffmpeg

DEFAULT_THRESHOLD = 0.3
_WIDTH = 160  # frames are scaled down first: the score needs no detail, and decoding stays cheap
_PTS_TIME = re.compile(r"pts_time:(-?[0-9.]+)")


def shot_changes(path: Path, threshold: float = DEFAULT_THRESHOLD, *, width: int = _WIDTH) -> tuple[float, ...]:
    """The times (seconds, from the start of the video stream, ascending) at which a new shot starts.

    Args:
        path: footage with a video stream.
        threshold: the scene score (0..1) above which a frame starts a shot; ffmpeg's
            documentation suggests 0.3 to 0.5.
        width: frames are scaled to this width before they are scored.

    A file ffmpeg cannot decode is a BadInputError naming it (see `assetline.failures`).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    graph = (
        ffmpeg_python.input(str(path))
        .video.filter("scale", width, -2)
        .filter("select", f"gt(scene,{threshold})")
        .filter("metadata", "print", file="-")
        .output("-", format="null")
    )
    proc = run_ffmpeg(graph, path, bad_input=True, output=path, global_options=("-nostats", "-an", "-sn", "-dn"))
    times = {round(float(t), 6) for t in _PTS_TIME.findall(proc.stdout)}
    return tuple(sorted(t for t in times if t > 0))
