"""Bringing a still to a target size with its alpha kept apart: Lanczos, or a learned net run in tiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from assetline.imaging.alpha import bleed_colour
from assetline.imaging.tiling import run_tiled

if TYPE_CHECKING:
    import ncnn

    from assetline.models import ModelSpec


def native_scale(spec: ModelSpec, scale: int) -> int:
    """The model's own scale to run at: the requested one when it has a net for it, else its largest."""
    return scale if scale in spec.scales else max(spec.scales)


def resize_lanczos(rgb: Image.Image, alpha: Image.Image | None, target: tuple[int, int]) -> Image.Image:
    """`rgb` (with `alpha`, if any, resized separately) at `target` size by Lanczos."""
    if alpha is None:
        return rgb.resize(target, Image.Resampling.LANCZOS)
    colour = Image.fromarray(bleed_colour(np.asarray(rgb), np.asarray(alpha)))
    result = colour.resize(target, Image.Resampling.LANCZOS)
    result.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
    return result


def upscale_with_net(
    net: ncnn.Net,
    rgb: Image.Image,
    alpha: Image.Image | None,
    run_scale: int,
    target: tuple[int, int],
    tile: int,
    overlap: int,
) -> Image.Image:
    """`rgb` through `net` at its `run_scale`, in tiles, then to `target` size; `alpha` resized with Lanczos.

    A net scales colour only: its alpha would be invented, so the input's own
    is resized, and the colour under clear pixels is bled first (no dark fringe).
    A run scale that overshoots `target` is reduced with Lanczos.
    """
    pixels = np.asarray(rgb)
    if alpha is not None:
        pixels = bleed_colour(pixels, np.asarray(alpha))
    big = Image.fromarray(run_tiled(net, pixels, run_scale, tile, overlap))
    if big.size != target:
        big = big.resize(target, Image.Resampling.LANCZOS)
    if alpha is not None:
        big.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
    return big
