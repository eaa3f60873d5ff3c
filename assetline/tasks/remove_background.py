"""Background removal with rembg: a cutout (RGBA, the input's size) from any still."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.config import ImageRecipe
from assetline.errors import ModelError
from assetline.imaging import fold_alpha, on_background
from assetline.imaging.matte import LEVELS_BLACK, LEVELS_WHITE, solid_levels
from assetline.media import load_image
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import model_ref, onnx_providers, package_version, save_png

OUTPUT_NAME = "cutout.png"


def rembg_session(model: str, device: str):
    """The rembg session for `model`, created once per process from the verified model file.

    rembg's own session class for the model does the pre- and post-processing;
    only its download hook is replaced, by the path of our hash-checked copy,
    so rembg can never fetch anything. onnxruntime gets this asset's share of
    the cores (`models.threads_per_asset()`), not every core.
    """
    folder = models.require(model)
    model_file = folder / models.get_spec(model).files[0].name
    providers = onnx_providers(device)
    threads = models.threads_per_asset()

    def make():
        import onnxruntime as ort
        from rembg.sessions import sessions_class

        base = next((c for c in sessions_class if c.name() == model), None)
        if base is None:
            raise ModelError(model, "rembg has no session for this model")
        pinned = type(f"Pinned{base.__name__}", (base,), {"download_models": classmethod(lambda cls, *a, **k: str(model_file))})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # inter-op threads stay unused: the graph runs sequentially
        return pinned(model, options, providers=providers)

    return models.sessions.get(("rembg", model, tuple(providers), threads), make)


@task(name="remove_background", cache_policy=NO_CACHE, persist_result=False)
def remove_background(source: Path, dest_dir: Path, image: ImageRecipe = ImageRecipe()) -> StepRecord:
    """Cut the subject out of `source` and write `dest_dir/cutout.png`.

    Args:
        source: any still Pillow reads; EXIF orientation is applied first.
        dest_dir: folder the cutout is written to (a staging folder in a run).
        image: the recipe's image section. Its `remove_background` options: model
            (default u2netp), alpha matting, decontamination, mask-only (a greyscale
            mask instead of a cutout), or a solid background colour instead of
            transparency (an RGB image). `device`: "cpu", "cuda" (an error if
            absent) or "auto". Inputs over `max_pixels` are refused before decoding.

    The model's mask gets levels first (LEVELS_BLACK..LEVELS_WHITE to 0..255):
    rembg's u2netp tops out at 254, which would leave a solid subject 99.6 %
    opaque. An input that already has transparency keeps it: the cutout's alpha
    is that mask multiplied by the input's alpha.
    """
    from rembg import remove

    options, device = image.remove_background, image.device
    started = utc_now()
    loaded = load_image(source, image.max_pixels)
    session = rembg_session(options.model, device)
    mask = remove(
        loaded.rgb,
        session=session,
        only_mask=True,
        post_process_mask=options.post_process_mask,
    )
    # u2netp tops out at 254 (imaging.matte.LEVELS_*): levels make a solid subject 255, the background 0.
    mask = Image.fromarray(solid_levels(np.asarray(mask)), mode="L")
    if loaded.alpha is not None:
        mask = fold_alpha(mask, loaded.alpha)

    if options.mask_only:
        result = mask
    elif options.alpha_matting or options.decontaminate:
        result = remove(
            loaded.rgb,
            session=_FixedMask(mask),
            alpha_matting=options.alpha_matting,
            alpha_matting_foreground_threshold=options.alpha_matting_foreground_threshold,
            alpha_matting_background_threshold=options.alpha_matting_background_threshold,
            alpha_matting_erode_size=options.alpha_matting_erode_size,
            decontaminate=options.decontaminate,
        ).convert("RGBA")
    else:
        result = loaded.rgb.convert("RGBA")
        result.putalpha(mask)
    if options.background and not options.mask_only:
        result = on_background(result, options.background)

    out = dest_dir / OUTPUT_NAME
    save_png(result, out, loaded.icc_profile if result.mode != "L" else None)
    import onnxruntime

    params = options.model_dump(mode="json", exclude={"enabled"})
    params.update(
        device=device,
        providers=session.inner_session.get_providers(),
        source_mode=loaded.source_mode,
        source_size=list(loaded.source_size),
        exif_orientation_applied=loaded.orientation_applied,
        output_mode=result.mode,
        levels={"black": LEVELS_BLACK, "white": LEVELS_WHITE},
    )
    tool = ToolRef(name="rembg", version=package_version("rembg"), runtime=f"onnxruntime {onnxruntime.__version__}")
    model = model_ref(models.get_spec(options.model))
    return StepRecord.finished("remove_background", tool, started, "compositeWithTrainedAlgorithmicMedia", OUTPUT_NAME, params, model)


class _FixedMask:
    """A rembg session stand-in that returns an already-predicted mask.

    Lets alpha matting and decontamination reuse the mask (with the input's own
    alpha folded in) instead of running the model a second time.
    """

    def __init__(self, mask: Image.Image) -> None:
        self._mask = mask

    def predict(self, img: Image.Image, *args, **kwargs) -> list[Image.Image]:
        return [self._mask]
