"""Demo inputs, made offline: photos scikit-image ships, and real speech assetline ships.

- four stills from scikit-image's data (public domain / CC0 photos);
- speech.wav: CMU ARCTIC a0007, "And you always want to see it in the
  superlative degree." (free use with notice: demo_data/speech.COPYING);
- interview.mp4: a moving test picture with that speech as its soundtrack,
  made here with ffmpeg.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

DEMO_DATA = Path(__file__).parent / "demo_data"

# The demo forbids a word speech.wav says, so that its subtitles are held for review (the
# footage's recipe section has no forbidden terms: interview.mp4, with the same speech, is delivered).
DEMO_FORBIDDEN = ["superlative"]

# name -> skimage.data function: a portrait, a cat, objects, a rocket.
DEMO_STILLS = {
    "astronaut.jpg": "astronaut",
    "chelsea.jpg": "chelsea",
    "coffee.png": "coffee",
    "rocket.jpg": "rocket",
}


def make_demo_inputs(folder: Path) -> list[Path]:
    """Write the demo inputs into `folder` (files already there are left as they are)."""
    from skimage import data

    from assetline.ffmpeg import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, func in DEMO_STILLS.items():
        path = folder / name
        if not path.exists():
            img = Image.fromarray(getattr(data, func)())
            img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
        made.append(path)
    speech = folder / "speech.wav"
    if not speech.exists():
        shutil.copyfile(DEMO_DATA / "speech.wav", speech)
    made.append(speech)
    clip = folder / "interview.mp4"
    if not clip.exists():
        run_ffmpeg(
            ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4.2", "-i", str(DEMO_DATA / "speech.wav"),
             "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "4.2",
             str(clip)],
            clip,
        )  # fmt: skip
    made.append(clip)
    return made
