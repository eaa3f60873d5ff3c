"""Running an image-to-image net (Real-ESRGAN through ncnn) over a picture in overlapping tiles.

Memory stays bounded by the tile size however large the picture; the overlap keeps the seams invisible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import ncnn


def run_tiled(net: ncnn.Net, rgb: np.ndarray, scale: int, tile: int, overlap: int) -> np.ndarray:
    """Run an image-to-image net over `rgb` (H, W, 3 uint8) in tiles; returns (H*s, W*s, 3) uint8.

    Each tile is fed with `overlap` pixels of context on every side (edge
    pixels repeated at the image border) and only its centre is kept, so tiles
    meet without seams while memory stays bounded by the tile size.
    """
    import ncnn

    h, w, _ = rgb.shape
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
    padded = np.pad(chw, ((0, 0), (overlap, overlap), (overlap, overlap)), mode="edge")
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    for y0 in range(0, h, tile):
        y1 = min(y0 + tile, h)
        for x0 in range(0, w, tile):
            x1 = min(x0 + tile, w)
            patch = np.ascontiguousarray(padded[:, y0 : y1 + 2 * overlap, x0 : x1 + 2 * overlap])
            extractor = net.create_extractor()
            extractor.input("data", ncnn.Mat(patch))
            ret, result = extractor.extract("output")
            if ret != 0:
                raise RuntimeError(f"ncnn extract failed with code {ret}")
            arr = np.asarray(result)
            core = arr[:, overlap * scale : (overlap + y1 - y0) * scale, overlap * scale : (overlap + x1 - x0) * scale]
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = (
                np.clip(core, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5
            ).astype(np.uint8)
    return out
