"""Demo inputs made offline from photos that scikit-image ships (public domain / CC0)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# name -> (skimage.data function, size to save at): portraits, objects, a cat.
DEMO_STILLS = {
    "astronaut.jpg": ("astronaut", None),
    "chelsea.jpg": ("chelsea", None),
    "coffee.png": ("coffee", None),
    "rocket.jpg": ("rocket", None),
}


def make_demo_inputs(folder: Path) -> list[Path]:
    """Write the demo stills into `folder` (unchanged files are left as they are)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (func, size) in DEMO_STILLS.items():
        path = folder / name
        if not path.exists():
            img = Image.fromarray(getattr(data, func)())
            if size:
                img = img.resize(size, Image.Resampling.LANCZOS)
            img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
        made.append(path)
    return made
