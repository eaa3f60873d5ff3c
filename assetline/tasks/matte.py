"""Rotoscoping: a matte for every frame of the rendered picture, so it drops onto video.mp4's timeline.

The pass (decode, segment, smooth, guided upsample, encode, alpha check) is
`assetline.matte`, without Prefect; this step loads rembg's session once and
records what ran, one record per output.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.config import MatteOptions
from assetline.imaging.matte import (
    GUIDE_EPS,
    GUIDE_RADIUS,
    LEVELS_BLACK,
    LEVELS_WHITE,
    MOTION_FULL,
    SMOOTH_WEIGHT,
)
from assetline.matte import MASK, MASK_CODEC, MASK_CRF, MASK_PIX_FMT, MOV, PRORES, PRORES_PIX_FMT, PRORES_PROFILE
from assetline.matte import Matter, render_matte
from assetline.progress import step_progress
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import model_ref, package_version
from assetline.tasks.remove_background import rembg_session

# The AI disclosure of a matte. Its alpha is an image a trained model made from the input (every value of
# it is the segmentation net's prediction, resampled), not the input's own pixels with generated parts
# composited in: that is IPTC's trainedAlgorithmicMedia ("created by a model trained on sampled content"),
# not compositeWithTrainedAlgorithmicMedia. matte.mov carries the picture's colour beside that alpha, but what
# it delivers, the reason it exists, is the model-made matte; the mask file is nothing else.
MATTE_SOURCE_TYPE = "trainedAlgorithmicMedia"


@task(name="matte", cache_policy=NO_CACHE, persist_result=False)
def matte(picture: Path, dest_dir: Path, options: MatteOptions = MatteOptions(), device: str = "cpu") -> list[StepRecord]:
    """Write the matte of `picture` (the rendered video) into `dest_dir`: `options.outputs`, whole or not at all.

    Args:
        picture: the rendered picture (video.picture.mp4); its frames, timestamps
            and display matrix are the matte's.
        dest_dir: folder the outputs are written to (a staging folder in a run).
        options: model (default u2netp), smoothing (default on), outputs
            (default matte.mov: ProRes 4444 with alpha; matte.mask.mp4: luma).
        device: "cpu", "cuda" (an error if absent) or "auto", for onnxruntime.

    Returns one record per output, in the order of `options.outputs`.
    """
    import av
    import onnxruntime

    started = utc_now()
    session = rembg_session(options.model, device)
    done = render_matte(picture, dest_dir, list(options.outputs), Matter(session, options.smoothing), step_progress("matte"))
    ended = utc_now()
    libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    parameters = {
        "model": options.model,
        "model_size": list(done.model_size),
        "device": device,
        "providers": session.inner_session.get_providers(),
        "smoothing": {"method": "motion-gated moving average", "weight": SMOOTH_WEIGHT, "motion_full": MOTION_FULL}
        if options.smoothing else None,
        "upsample": {"method": "guided filter (luma guide)", "radius": GUIDE_RADIUS, "eps": GUIDE_EPS},
        "levels": {"black": LEVELS_BLACK, "white": LEVELS_WHITE},
        "frames": done.frames,
        "timestamps": "each frame keeps the picture's timestamp",
        "opaque_fraction": round(done.opaque_fraction, 4),
        "clear_fraction": round(done.clear_fraction, 4),
        "soft_fraction": round(done.soft_fraction, 4) if done.soft_fraction is not None else None,
        "audio": None,
    }  # fmt: skip
    encodings = {
        MOV: {"codec": PRORES, "profile": PRORES_PROFILE, "pix_fmt": PRORES_PIX_FMT, "container": "mov",
              "alpha": "straight", "alpha_checked": {"frame": done.clearest_frame, "mean_alpha": done.clearest_mean_alpha}},
        MASK: {"codec": MASK_CODEC, "crf": MASK_CRF, "pix_fmt": MASK_PIX_FMT, "container": "mp4", "matte_in": "luma"},
    }  # fmt: skip
    tool = ToolRef(name="rembg", version=package_version("rembg"),
                   runtime=f"onnxruntime {onnxruntime.__version__}; pyav {av.__version__}, libavcodec {libavcodec}")  # fmt: skip
    return [
        StepRecord(name="matte", tool=tool, model=model_ref(models.get_spec(options.model)),
                   parameters=parameters | {"encode": encodings[name]}, started_at=started, ended_at=ended,
                   digital_source_type=MATTE_SOURCE_TYPE, output=name)  # fmt: skip
        for name in options.outputs
    ]
