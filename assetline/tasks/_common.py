"""What every step shares: tool versions, model references, device checks, PNG writing."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from PIL import Image

from assetline.errors import DeviceError
from assetline.models import ModelSpec
from assetline.provenance import ModelRef, ToolRef
from assetline.storage import fsync_file

PNG_COMPRESS_LEVEL = 4  # zlib level: level 9 costs about 3x the time for ~5% smaller files


@cache
def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def ffmpeg_tool() -> ToolRef:
    """The ffmpeg every step runs: imageio-ffmpeg's static binary, by its own version."""
    import imageio_ffmpeg

    return ToolRef(
        name="ffmpeg",
        version=imageio_ffmpeg.get_ffmpeg_version(),
        runtime=f"imageio-ffmpeg {package_version('imageio-ffmpeg')}",
    )


def model_ref(spec: ModelSpec, only: tuple[str, ...] | None = None) -> ModelRef:
    files = {f.name: f.sha256 for f in spec.files if only is None or f.name in only}
    weights = max((f for f in spec.files if f.name in files), key=lambda f: f.size)
    return ModelRef(name=spec.name, sha256=weights.sha256, files=files)


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for an explicit device choice; a missing GPU is an error, not a fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise DeviceError("device=cuda", f"onnxruntime has no CUDA provider here (available: {', '.join(available)})")
    return ["CPUExecutionProvider"]


def ncnn_uses_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    import ncnn

    gpus = ncnn.get_gpu_count()
    if gpus == 0 and device == "cuda":
        raise DeviceError("device=cuda", "ncnn finds no Vulkan GPU on this machine")
    return gpus > 0


def save_png(img: Image.Image, path: Path, icc_profile: bytes | None = None) -> None:
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    img.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, **extra)
    fsync_file(path)
