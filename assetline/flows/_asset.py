"""What every asset flow shares: the up-to-date check, staging, sidecars, and the move into place.

A flow describes its steps as a function of the staging folder returning what
it made (`Made`: an output, its inputs, the steps that led to it); `produce`
does the rest the same way for every kind of asset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assetline.assets import Asset, is_up_to_date
from assetline.config import Recipe
from assetline.errors import AssetlineError
from assetline.provenance import InputRef, StepRecord, build_manifest, current_run, sidecar_for, write_manifest
from assetline.storage import asset_lock, publish, remove_stale_temporaries, restate_staged_error, sha256_file, staging_folder


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
    def done(cls, asset: Asset, out_dir: Path, outputs: list[Path], message: str = "") -> AssetResult:
        return cls(str(asset.path), "done", asset.kind, asset.sha256, str(out_dir), [p.name for p in outputs], message)

    @classmethod
    def skipped(cls, asset: Asset, out_dir: Path, names: list[str]) -> AssetResult:
        return cls(str(asset.path), "skipped", asset.kind, asset.sha256, str(out_dir), names, "up to date")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Made:
    """One staged output, the inputs it was made from, and every step that led to it, in order."""

    output: Path
    inputs: list[InputRef]
    steps: list[StepRecord]


def run_name() -> str:
    """Flow runs are named after the asset: `chelsea.jpg · 07c5a883`."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    sha = params.get("sha256") or ""
    name = Path(str(params.get("path") or "")).name or "(no path)"
    return f"{name} · {sha[:8]}" if sha else name


def source_ref(asset: Asset) -> InputRef:
    return InputRef(path=str(asset.path.resolve()), sha256=asset.sha256, role="source", bytes=asset.bytes)


def intermediate_ref(path: Path) -> InputRef:
    """An output of this run that a later output was made from (same folder, so a file name)."""
    return InputRef(path=path.name, sha256=sha256_file(path), role="intermediate", bytes=path.stat().st_size)


def produce(
    asset: Asset,
    out_root: Path,
    recipe: Recipe,
    wanted: list[str],
    every_output: set[str],
    make: Callable[[Path], list[Made]],
    note: str = "",
) -> AssetResult:
    """Run `make` in a staging folder and publish what it made, unless the outputs are up to date.

    `wanted` are the outputs this recipe makes; outputs in `every_output` that
    it no longer makes are removed after a successful run. The recipe is the
    run's own, carried here: its hash for the kind names the outputs' recipe,
    its provenance section goes into their signed manifests.
    """
    recipe_sha256 = recipe.section_sha256(asset.kind)
    final_dir = out_root / asset.folder_name
    if is_up_to_date(asset, out_root, wanted, recipe_sha256):
        return AssetResult.skipped(asset, final_dir, wanted)
    with asset_lock(out_root, asset.folder_name):  # another run on the same content waits, then skips
        if is_up_to_date(asset, out_root, wanted, recipe_sha256):
            return AssetResult.skipped(asset, final_dir, wanted)
        remove_stale_temporaries(final_dir)  # a write cut short by a killed process
        with staging_folder(out_root, asset.folder_name) as stage:
            try:
                made = make(stage)
                outputs = publish_outputs(made, final_dir, recipe_sha256, recipe.provenance.training_mining)
            except (OSError, AssetlineError) as exc:  # a full disk, an unwritable folder: named as the user sees it
                stated = restate_staged_error(exc, stage, final_dir)
                if stated is None:
                    raise
                raise stated from exc
        remove_stale(final_dir, every_output - {p.name for p in outputs})
    return AssetResult.done(asset, final_dir, outputs, note)


def publish_outputs(made: list[Made], final_dir: Path, recipe_sha256: str, training_mining) -> list[Path]:
    """Sign each staged output and write its sidecars beside it, then move outputs, then sidecars, into `final_dir`.

    Every output gets Content Credentials the same way, whatever its kind: a
    C2PA manifest inside it (PNG, JPEG, MP4) or in `X.c2pa` (text), then the
    JSON sidecar recording its final bytes. Outputs are signed in the order
    made, so one made from an earlier one (upscaled.png from cutout.png)
    names the signed file and chains to its manifest. Sidecars move last so
    that a sidecar never names a file that is not there yet.
    """
    from assetline.provenance.credentials import c2pa_sidecar_for
    from assetline.provenance.signing import content_signer

    run = current_run()
    signer, _ = content_signer(training_mining)
    files, stores, sidecars = [], [], []
    signed: dict[str, InputRef] = {}  # outputs of this run, as they are once signed
    for item in made:
        inputs = [signed.get(ref.path, ref) if ref.role == "intermediate" else ref for ref in item.inputs]
        manifest = build_manifest(item.output, inputs, item.steps, recipe_sha256, run)
        sidecars.append(write_manifest(item.output, manifest, signer))
        files.append(item.output)
        stores += [p for p in (c2pa_sidecar_for(item.output),) if p.is_file()]
        signed[item.output.name] = intermediate_ref(item.output)
    moved = publish(files + stores + sidecars, final_dir)
    return moved[: len(files)]


def remove_stale(final_dir: Path, names: set[str]) -> None:
    """Remove outputs an earlier recipe made that this one no longer does, sidecar first."""
    for name in sorted(names):
        sidecar_for(final_dir / name).unlink(missing_ok=True)
        (final_dir / (name + ".c2pa")).unlink(missing_ok=True)  # its C2PA manifest store, for text outputs
        (final_dir / name).unlink(missing_ok=True)
