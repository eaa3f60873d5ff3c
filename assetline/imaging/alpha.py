"""Transparency handled apart from colour: colour bled under clear pixels, a mask folded into alpha, a solid backdrop."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def bleed_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill the colour of fully transparent pixels from the nearest visible pixel.

    Resampling then mixes only colours of the subject at its edges, so no dark
    fringe (the black usually stored under clear pixels) bleeds in.
    """
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return rgb
    _, (iy, ix) = ndimage.distance_transform_edt(hidden, return_indices=True)
    return rgb[iy, ix]


def fold_alpha(mask: Image.Image, alpha: Image.Image) -> Image.Image:
    """A greyscale mask multiplied by an input's own alpha (both "L", same size): what was clear stays clear."""
    combined = np.asarray(mask, dtype=np.uint16) * np.asarray(alpha, dtype=np.uint16) // 255
    return Image.fromarray(combined.astype(np.uint8), mode="L")


def on_background(cutout: Image.Image, colour: str) -> Image.Image:
    """`cutout` composited over a solid `colour` ("#rrggbb"): an RGB image, no transparency left."""
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    base = Image.new("RGBA", cutout.size, rgb + (255,))
    return Image.alpha_composite(base, cutout.convert("RGBA")).convert("RGB")
