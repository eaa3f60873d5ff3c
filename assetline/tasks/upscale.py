"""The upscale step: Real-ESRGAN through ncnn (tiled, CPU by default) or Pillow Lanczos, into `upscaled.png`.

A thin task over `assetline.imaging` (tiling, alpha kept apart from colour,
resizing); here the net is loaded and the record made.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.config import ImageRecipe
from assetline.errors import BadInputError
from assetline.imaging import native_scale, resize_lanczos, upscale_with_net
from assetline.media import load_image
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import model_ref, ncnn_uses_gpu, package_version, save_png

OUTPUT_NAME = "upscaled.png"


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


@task(name="upscale", cache_policy=NO_CACHE, persist_result=False)
def upscale(source: Path, dest_dir: Path, image: ImageRecipe = ImageRecipe()) -> StepRecord:
    """Scale `source` (usually the cutout) by `options.scale` into `dest_dir/upscaled.png`.

    Args:
        source: a still; RGBA keeps its transparency, a greyscale mask stays a mask.
        dest_dir: folder the result is written to.
        image: the recipe's image section. Its `upscale` options: method
            "realesrgan" (default model realesr-animevideov3; realesrgan-x4plus
            for photos, slower) or "lanczos"; scale 2, 3 or 4; tile size and
            overlap for the learned method. A model without a net for the scale
            runs at its own and is reduced with Lanczos. `device`: "cpu", "cuda"
            (Vulkan GPU through ncnn; an error if absent) or "auto". Inputs over
            `max_pixels`, or results over `max_output_pixels`, are refused.
    """
    options, device, max_output_pixels = image.upscale, image.device, image.max_output_pixels
    started = utc_now()
    loaded = load_image(source, image.max_pixels)
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
        result = resize_lanczos(loaded.rgb, loaded.alpha, target)
        tool = ToolRef(name="pillow", version=package_version("pillow"))
    else:
        spec = models.get_spec(options.model)
        run_scale = native_scale(spec, options.scale)
        net, used_files, gpu = ncnn_net(options.model, run_scale, device)
        result = upscale_with_net(
            net, loaded.rgb, loaded.alpha, run_scale, target, options.tile, options.tile_overlap
        )
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
    kind = "compositeWithTrainedAlgorithmicMedia" if model else "algorithmicallyEnhanced"
    return StepRecord.finished("upscale", tool, started, kind, OUTPUT_NAME, params, model)
