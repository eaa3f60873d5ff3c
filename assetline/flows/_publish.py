"""Finishing an asset: sidecars for every staged output, then the move into place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from assetline.assets import Asset
from assetline.provenance import InputRef, StepRecord, build_manifest, current_run, sidecar_for, write_manifest
from assetline.storage import publish


@dataclass
class AssetResult:
    """What happened to one asset: the record the CLI table and the Prefect artifacts show."""

    source: str
    status: str  # "done" | "skipped" | "failed"
    kind: str | None = None
    sha256: str | None = None
    out_dir: str | None = None
    outputs: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    @classmethod
    def done(cls, asset: Asset, out_dir: Path, outputs: list[Path]) -> AssetResult:
        return cls(str(asset.path), "done", asset.kind, asset.sha256, str(out_dir), [p.name for p in outputs])

    @classmethod
    def skipped(cls, asset: Asset, out_dir: Path, names: list[str]) -> AssetResult:
        return cls(str(asset.path), "skipped", asset.kind, asset.sha256, str(out_dir), names, "up to date")

    def to_dict(self) -> dict:
        return asdict(self)


def publish_outputs(
    made: list[tuple[Path, list[InputRef], list[StepRecord]]], final_dir: Path, recipe_sha256: str
) -> list[Path]:
    """Write each staged output's sidecar beside it, then move outputs, then sidecars, into `final_dir`.

    Sidecars move last so that a sidecar never names a file that is not there yet.
    """
    run = current_run()
    files, sidecars = [], []
    for output, inputs, steps in made:
        manifest = build_manifest(output, inputs, steps, recipe_sha256, run)
        sidecars.append(write_manifest(output, manifest))
        files.append(output)
    moved = publish(files + sidecars, final_dir)
    return moved[: len(files)]


def remove_stale(final_dir: Path, names: set[str]) -> None:
    """Remove outputs an earlier recipe made that this one no longer does, sidecar first."""
    for name in sorted(names):
        sidecar_for(final_dir / name).unlink(missing_ok=True)
        (final_dir / name).unlink(missing_ok=True)
