"""Upscaling stills: Real-ESRGAN through ncnn (tiled, CPU by default) or Pillow Lanczos.

Transparency is handled apart from colour: the alpha channel is resized with
Lanczos, and the colour under fully transparent pixels is first filled from
the nearest visible pixel so no dark fringe bleeds into the edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE
from scipy import ndimage

from assetline import models
from assetline.config import UpscaleOptions
from assetline.errors import BadInputError
from assetline.media import load_image
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import model_ref, ncnn_uses_gpu, package_version, save_png

OUTPUT_NAME = "upscaled.png"


def native_scale(spec: models.ModelSpec, scale: int) -> int:
    """The model's own scale to run at: the requested one when it has a net for it, else its largest."""
    return scale if scale in spec.scales else max(spec.scales)


def ncnn_net(model: str, scale: int, device: str):
    """The ncnn net for `model` at its native `scale`, loaded once per process."""
    import ncnn

    folder = models.require(model)
    gpu = ncnn_uses_gpu(device)
    stem = f"{model}-x{scale}" if model == "realesr-animevideov3" else model

    threads = models.threads_per_asset()

    def make():
        net = ncnn.Net()
        net.opt.use_vulkan_compute = gpu
        net.opt.num_threads = threads
        net.load_param(str(folder / f"{stem}.param"))
        net.load_model(str(folder / f"{stem}.bin"))
        return net

    return models.sessions.get(("ncnn", model, scale, gpu, threads), make), (f"{stem}.param", f"{stem}.bin"), gpu


def run_tiled(net, rgb: np.ndarray, scale: int, tile: int, overlap: int) -> np.ndarray:
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


def bleed_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill the colour of fully transparent pixels from the nearest visible pixel."""
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return rgb
    _, (iy, ix) = ndimage.distance_transform_edt(hidden, return_indices=True)
    return rgb[iy, ix]


@task(name="upscale", cache_policy=NO_CACHE, persist_result=False)
def upscale(
    source: Path,
    dest_dir: Path,
    options: UpscaleOptions = UpscaleOptions(),
    device: str = "cpu",
    max_pixels: int = 100_000_000,
    max_output_pixels: int = 400_000_000,
) -> StepRecord:
    """Scale `source` (usually the cutout) by `options.scale` into `dest_dir/upscaled.png`.

    Args:
        source: a still; RGBA keeps its transparency, a greyscale mask stays a mask.
        dest_dir: folder the result is written to.
        options: method "realesrgan" (default model realesr-animevideov3;
            realesrgan-x4plus for photos, slower) or "lanczos"; scale 2, 3 or 4;
            tile size and overlap for the learned method. A model without a net
            for the scale runs at its own and is reduced with Lanczos.
        device: "cpu", "cuda" (Vulkan GPU through ncnn; an error if absent) or "auto".
        max_pixels / max_output_pixels: refuse inputs or results beyond these.
    """
    started = utc_now()
    loaded = load_image(source, max_pixels)
    w, h = loaded.rgb.size
    target = (w * options.scale, h * options.scale)
    if target[0] * target[1] > max_output_pixels:
        raise BadInputError(
            source,
            f"upscaled image would be {target[0]}x{target[1]}, over the limit of "
            f"{max_output_pixels / 1e6:.0f} MP (recipe image.max_output_pixels)",
        )
    is_mask = loaded.source_mode in ("L", "1") and loaded.alpha is None
    params: dict = {"scale": options.scale, "method": options.method}
    model = None
    if is_mask:
        # A mask is resampled, never hallucinated: a learned net would invent edges.
        result = loaded.rgb.convert("L").resize(target, Image.Resampling.LANCZOS)
        params["method"] = "lanczos"
        params["note"] = "greyscale mask resized with Lanczos"
        tool = ToolRef(name="pillow", version=package_version("pillow"))
    elif options.method == "lanczos":
        result = _lanczos(loaded.rgb, loaded.alpha, target)
        tool = ToolRef(name="pillow", version=package_version("pillow"))
    else:
        spec = models.get_spec(options.model)
        run_scale = native_scale(spec, options.scale)
        net, used_files, gpu = ncnn_net(options.model, run_scale, device)
        rgb = np.asarray(loaded.rgb)
        if loaded.alpha is not None:
            rgb = bleed_colour(rgb, np.asarray(loaded.alpha))
        big = Image.fromarray(run_tiled(net, rgb, run_scale, options.tile, options.tile_overlap))
        if big.size != target:
            big = big.resize(target, Image.Resampling.LANCZOS)
        if loaded.alpha is not None:
            big.putalpha(loaded.alpha.resize(target, Image.Resampling.LANCZOS))
        result = big
        model = model_ref(spec, used_files)
        params.update(
            model=options.model,
            native_scale=run_scale,
            tile=options.tile,
            tile_overlap=options.tile_overlap,
            device=device,
            backend="vulkan" if gpu else "cpu",
            alpha="lanczos, colour bled under transparent pixels",
        )
        tool = ToolRef(name="ncnn", version=package_version("ncnn"), runtime="vulkan" if gpu else "cpu")
    out = dest_dir / OUTPUT_NAME
    save_png(result, out, loaded.icc_profile if result.mode != "L" else None)
    params.update(input_size=[w, h], output_size=list(result.size), output_mode=result.mode)
    return StepRecord(
        name="upscale",
        tool=tool,
        model=model,
        parameters=params,
        started_at=started,
        ended_at=utc_now(),
        digital_source_type="compositeWithTrainedAlgorithmicMedia" if model else "algorithmicallyEnhanced",
        output=OUTPUT_NAME,
    )


def _lanczos(rgb: Image.Image, alpha: Image.Image | None, target: tuple[int, int]) -> Image.Image:
    if alpha is None:
        return rgb.resize(target, Image.Resampling.LANCZOS)
    colour = Image.fromarray(bleed_colour(np.asarray(rgb), np.asarray(alpha)))
    result = colour.resize(target, Image.Resampling.LANCZOS)
    result.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
    return result
