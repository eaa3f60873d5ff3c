"""Real media for the tests: photos shipped by scikit-image, clips made with our ffmpeg over real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"


def photo(name: str, size: tuple[int, int] | None = None) -> Image.Image:
    """A real photo shipped by scikit-image: astronaut, chelsea, coffee, rocket."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)())
    return img.resize(size, Image.Resampling.LANCZOS) if size else img


def make_clip(path: Path, *, audio: Path | None = SPEECH, seconds: float = 4.2, size: str = "160x90",
              rate: int = 25) -> Path:
    """A small H.264 clip: a moving test picture, with real speech (or none) as its soundtrack."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio is not None:
        args += ["-i", str(audio)]
    args += ["-map", "0:v"] + (["-map", "1:a", "-c:a", "aac"] if audio is not None else [])
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", str(seconds)]
    from assetline.ffmpeg import run_ffmpeg

    run_ffmpeg([*args, str(path)], path)
    return path


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
