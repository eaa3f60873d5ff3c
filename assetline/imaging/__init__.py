"""Pure image operations for the image steps: tiling a net over a picture, transparency kept apart, resizing.

numpy, Pillow and scipy only (ncnn is imported where a net is run): no Prefect, and no model is loaded here.
"""

from assetline.imaging.alpha import bleed_colour, fold_alpha, on_background
from assetline.imaging.scaling import native_scale, resize_lanczos, upscale_with_net
from assetline.imaging.tiling import run_tiled

__all__ = [
    "bleed_colour",
    "fold_alpha",
    "native_scale",
    "on_background",
    "resize_lanczos",
    "run_tiled",
    "upscale_with_net",
]
