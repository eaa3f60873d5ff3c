"""The picture of a clip, rendered in one streaming pass: denoise, upscale, H.264 encode.

Lanczos is one ffmpeg run. Real-ESRGAN streams frames: ffmpeg decodes (and
denoises) into a pipe, each frame goes through the net, and PyAV encodes it
next to the source's audio packets. The pass itself, and how timing, pixel
shape, rotation and sound survive it, is `assetline.video` (no Prefect); this
step picks the path, loads the net and records what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.config import DenoiseOptions, EncodeOptions, VideoUpscaleOptions
from assetline.imaging import native_scale, run_tiled
from assetline.progress import step_progress
from assetline.provenance import ModelRef, StepRecord, ToolRef, utc_now
from assetline.storage import atomic_path
from assetline.tasks._common import ffmpeg_tool, model_ref, package_version
from assetline.tasks.upscale import ncnn_net
from assetline.video import (
    DENOISE_FILTERS,
    PIX_FMT,
    SourcePicture,
    check_complete,
    output_size,
    output_timing,
    probe_picture,
    render_frames,
    render_lanczos,
)

OUTPUT_NAME = "video.picture.mp4"


@dataclass(frozen=True)
class _Rendered:
    """What one path did: how it upscaled (parameters and tool), what encoded, which model if any."""

    upscale: dict
    upscaler: ToolRef
    encoder: ToolRef
    model: ModelRef | None = None


@task(name="render_video", cache_policy=NO_CACHE, persist_result=False)
def render_video(
    source: Path,
    dest_dir: Path,
    denoise: DenoiseOptions = DenoiseOptions(),
    upscale: VideoUpscaleOptions = VideoUpscaleOptions(),
    encode: EncodeOptions = EncodeOptions(),
    device: str = "cpu",
) -> list[StepRecord]:
    """Denoise, upscale and encode the picture of `source` into `dest_dir/video.picture.mp4`.

    The source's audio streams are copied unchanged beside the picture; later
    steps swap in normalised audio and add subtitles.

    Args:
        source: a video file; never modified.
        dest_dir: folder the result is written to (whole or not at all).
        denoise: "hqdn3d" (default, fast), "nlmeans" (better, much slower) or "off".
        upscale: method "lanczos" (default, ffmpeg scale) or "realesrgan"
            (animevideov3 through ncnn, per frame, slow); ×scale (default 2)
            or `target_height`; width follows the aspect ratio, both even.
            `enabled=False` only denoises and encodes.
        encode: libx264 CRF (default 18) and preset (default medium); always
            yuv420p, MP4 with the index first (faststart).
        device: for realesrgan: "cpu", "cuda" (a Vulkan GPU through ncnn; an
            error if absent) or "auto". Lanczos always runs on the CPU.

    Returns one record per operation done, in order: denoise (unless off),
    upscale (if enabled), transcode.
    """
    started = utc_now()
    picture = probe_picture(source)
    size = output_size(picture.width, picture.height, upscale)
    learned = upscale.enabled and upscale.method == "realesrgan"
    with atomic_path(dest_dir / OUTPUT_NAME) as tmp:
        if learned:
            done = _render_learned(source, tmp, picture, size, denoise, upscale, encode, device)
        else:
            resize = render_lanczos(source, tmp, picture, size, denoise, encode)
            done = _Rendered(resize, ffmpeg_tool(), ffmpeg_tool())
        frames, vfr = output_timing(tmp, picture.time_base)
        check_complete(source, picture, frames)
    ended = utc_now()

    def record(name: str, tool: ToolRef, parameters: dict, model: ModelRef | None = None) -> StepRecord:
        kind = "compositeWithTrainedAlgorithmicMedia" if model else "algorithmicallyEnhanced"
        return StepRecord(name=name, tool=tool, model=model, parameters=parameters, started_at=started,
                          ended_at=ended, digital_source_type=kind, output=OUTPUT_NAME)  # fmt: skip

    steps = []
    if denoise.method != "off":
        filters = {"method": denoise.method, "filter": DENOISE_FILTERS[denoise.method]}
        steps.append(record("denoise", ffmpeg_tool(), filters))
    source_facts = {"source": picture.facts(vfr)}
    if upscale.enabled:
        params = {"method": upscale.method}
        params.update({"target_height": upscale.target_height} if upscale.target_height
                      else {"scale": upscale.scale, "max_height": upscale.max_height})  # fmt: skip
        params.update(input_size=[picture.width, picture.height], output_size=list(size), **done.upscale)
        steps.append(record("upscale", done.upscaler, params | source_facts, done.model))
    transcode = {
        "codec": "libx264",
        "crf": encode.crf,
        "preset": encode.preset,
        "pix_fmt": PIX_FMT,
        "container": "mp4",
        "faststart": True,
        "timestamps": "each frame keeps its source timestamp",
        "rotation": picture.rotation,
        "frames": frames,
        "audio": {"copied": list(picture.audio_codecs)} if picture.audio_codecs else None,
    }
    if not upscale.enabled:
        transcode.update(output_size=list(size), **source_facts)
    steps.append(record("transcode", done.encoder, transcode))
    return steps


def _render_learned(
    source: Path,
    tmp: Path,
    picture: SourcePicture,
    size: tuple[int, int],
    denoise: DenoiseOptions,
    upscale: VideoUpscaleOptions,
    encode: EncodeOptions,
    device: str,
) -> _Rendered:
    """The frame pipe with Real-ESRGAN on every frame, tiled, at the model's nearest native scale."""
    import av

    spec = models.get_spec(upscale.model)
    wanted = max(2, min(4, -(-size[1] // picture.height)))  # smallest whole factor reaching the target
    run_scale = native_scale(spec, wanted)
    net, used_files, gpu = ncnn_net(upscale.model, run_scale, device)

    def enlarge(rgb):
        return run_tiled(net, rgb, run_scale, upscale.tile, upscale.tile_overlap)

    render_frames(source, tmp, picture, size, denoise, encode, enlarge, step_progress("render_video"))

    resized = (picture.width * run_scale, picture.height * run_scale) != size
    params = {
        "model": upscale.model,
        "native_scale": run_scale,
        "resize": "lanczos (swscale) from the net's size" if resized else None,
        "tile": upscale.tile,
        "tile_overlap": upscale.tile_overlap,
        "device": device,
        "backend": "vulkan" if gpu else "cpu",
        "sar": f"{picture.sar.numerator}:{picture.sar.denominator}",
    }
    net_tool = ToolRef(name="ncnn", version=package_version("ncnn"), runtime="vulkan" if gpu else "cpu")
    libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    encoder = ToolRef(name="pyav", version=av.__version__, runtime=f"libavcodec {libavcodec}")
    return _Rendered(params, net_tool, encoder, model_ref(spec, used_files))
