"""Mattes without Prefect: levels that make a solid subject opaque, a guided upsample that keeps edges on the
picture, motion-gated temporal smoothing, and the figures that judge them (flicker, edge shift).

numpy and scipy only; the segmentation model is run by the caller (`assetline.matte`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

# rembg's u2netp never reaches 255 inside a subject: it min-max normalises the net's output and
# truncates `pred * 255` to uint8, so a solid subject reads 254. Measured on scikit-image's photos
# (u2netp, rembg 2.0.86): chelsea 0.00 % of pixels at 255 and 43.9 % at 254; astronaut 0.16 % / 48.0 %;
# coffee 0.23 % / 44.8 %. The background sits at 0-2 (chelsea 21.9 % at <= 2, 20.4 % at 0).
# Levels: LEVELS_BLACK and below becomes 0, LEVELS_WHITE and above 255, a straight line between.
LEVELS_BLACK, LEVELS_WHITE = 2, 250

# Guided upsample (He, Sun and Tang's guided filter, the "fast" form: coefficients solved at the model's
# resolution, then upsampled): the window radius in model pixels and the regulariser on the guide's
# variance (0..1 luma squared). eps 1e-3: edges follow luma steps of about 0.03 and more; flat noise
# does not bend the matte.
GUIDE_RADIUS, GUIDE_EPS = 4, 1e-3

# Motion-gated moving average, at the model's resolution. SMOOTH_WEIGHT: the previous matte's share
# where nothing moves (0.85: an exponential average over about 6 frames); it falls to 0 where the picture
# changed by MOTION_FULL (luma, 0..1), measured between the two frames each blurred over a MOTION_WINDOW
# square so that sensor noise does not count as motion (sigma 6/255 noise reads about 0.005, a moving
# edge 0.1 and more). Only the picture gates it, not the matte: on a still picture u2netp's matte itself
# jumps (a noisy still cat: frames whose mean alpha changes by 22/255), and that is the flicker to remove.
SMOOTH_WEIGHT, MOTION_FULL, MOTION_WINDOW = 0.85, 0.025, 5


def solid_levels(mask: np.ndarray) -> np.ndarray:
    """`mask` (uint8, or float in 0..255) with LEVELS_BLACK..LEVELS_WHITE stretched to 0..255 (uint8)."""
    stretched = (np.asarray(mask, dtype=np.float32) - LEVELS_BLACK) * (255.0 / (LEVELS_WHITE - LEVELS_BLACK))
    return np.clip(stretched + 0.5, 0, 255).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma of an RGB uint8 picture as float32 in 0..1 (the guide and the motion measure)."""
    weights = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32) / 255.0
    return np.asarray(rgb, dtype=np.float32) @ weights


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=2 * radius + 1, mode="reflect")


def _resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float32 plane brought to `shape` (rows, columns) bilinearly (Pillow's "F" mode: fast, no uint8 steps)."""
    from PIL import Image

    if x.shape == shape:
        return x
    return np.asarray(Image.fromarray(x, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def guided_upsample(alpha: np.ndarray, guide: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS) -> np.ndarray:
    """`alpha` (float32 0..1 at the model's size) brought to `guide`'s size (luma 0..1), its edges on the guide's.

    The filter's linear model q = a·I + b is fitted in each window at the low
    resolution; a and b are smooth, so they are upsampled bilinearly and
    applied to the full-size guide: the edge comes from the picture, not from
    the blocky low-resolution matte.
    """
    small = _resize(guide, alpha.shape)
    mean_i, mean_p = _box(small, radius), _box(alpha, radius)
    cov_ip = _box(small * alpha, radius) - mean_i * mean_p
    var_i = _box(small * small, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    a, b = _box(a, radius), _box(b, radius)
    return np.clip(_resize(a, guide.shape) * guide + _resize(b, guide.shape), 0.0, 1.0)


@dataclass
class TemporalSmoother:
    """A motion-gated moving average of mattes at the model's resolution (one clip, frames in order).

    Where the picture is still the kept matte weighs SMOOTH_WEIGHT (flicker
    averaged away); where it moved, the new matte is taken as it is (no lag on
    motion), with a straight ramp between.
    """

    weight: float = SMOOTH_WEIGHT
    _alpha: np.ndarray | None = field(default=None, repr=False)
    _luma: np.ndarray | None = field(default=None, repr=False)

    def update(self, alpha: np.ndarray, small_luma: np.ndarray) -> np.ndarray:
        """The smoothed matte for this frame: `alpha` (float32 0..1) and its picture's luma, both at model size."""
        blurred = _box(small_luma, MOTION_WINDOW // 2)
        if self._alpha is None or self._alpha.shape != alpha.shape:
            kept = alpha
        else:
            motion = _box(np.abs(blurred - self._luma), MOTION_WINDOW // 2)
            w = self.weight * np.clip(1.0 - motion / MOTION_FULL, 0.0, 1.0)
            kept = w * self._alpha + (1.0 - w) * alpha
        self._alpha, self._luma = kept, blurred
        return kept


def flicker(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute change of alpha (0..255) between two consecutive frames' mattes."""
    return float(np.mean(np.abs(current.astype(np.float32) - previous.astype(np.float32))))


def edge_shift(reference: np.ndarray, other: np.ndarray) -> float:
    """Median distance in pixels from `other`'s subject edge (alpha 128) to `reference`'s; 0 when either has none.

    The median: a blob the model shows in one frame and not the next (flicker that smoothing holds back) is
    a small part of the edge and does not count as the edge moving.
    """
    def edge(alpha: np.ndarray) -> np.ndarray:
        solid = alpha >= 128
        return solid & ~ndimage.binary_erosion(solid)

    ref_edge, other_edge = edge(reference), edge(other)
    if not ref_edge.any() or not other_edge.any():
        return 0.0
    distance = ndimage.distance_transform_edt(~ref_edge)
    return float(np.median(distance[other_edge]))
