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
from assetline.provenance.manifest import ReviewRecord, RunRef
from assetline.storage import asset_lock, publish, remove_stale_temporaries, restate_staged_error, sha256_file, staging_folder


@dataclass
class AssetResult:
    """What happened to one asset: the record the CLI table and the Prefect artifacts show."""

    source: str
    status: str  # "done" | "skipped" | "failed" | "review" (held for a person) | "rejected" (by one, earlier)
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

    @classmethod
    def held(cls, asset: Asset, held_dir: Path, names: list[str], reasons: list) -> AssetResult:
        why = "; ".join(r.detail for r in reasons)
        return cls(str(asset.path), "review", asset.kind, asset.sha256, str(held_dir), names, f"awaiting review: {why}")

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

    The recipe's review policy (`review.policy.review_reasons`) decides what
    follows `make`: delivery now, or the outputs held whole in
    `OUT/.review/<asset>/` (result status "review") until a person decides.
    A held asset is not made again while it waits; one a reviewer rejected
    is not offered again for the same input and recipe (status "rejected").
    """
    from assetline.review import held as review_queue
    from assetline.review.policy import review_reasons

    recipe_sha256 = recipe.section_sha256(asset.kind)
    final_dir = out_root / asset.folder_name

    def already() -> AssetResult | None:
        if is_up_to_date(asset, out_root, wanted, recipe_sha256):
            return AssetResult.skipped(asset, final_dir, wanted)
        return awaiting_or_rejected(asset, out_root, recipe_sha256)

    if (found := already()) is not None:
        return found
    with asset_lock(out_root, asset.folder_name):  # another run on the same content waits, then skips
        if (found := already()) is not None:
            return found
        remove_stale_temporaries(final_dir)  # a write cut short by a killed process
        with staging_folder(out_root, asset.folder_name) as stage:
            try:
                made = make(stage)
                reasons = review_reasons(asset.kind, made, recipe) if made else []
                if reasons:
                    waiting = review_queue.HeldAsset(
                        source=str(asset.path), sha256=asset.sha256, kind=asset.kind, folder=asset.folder_name,
                        recipe_sha256=recipe_sha256, training_mining=recipe.provenance.training_mining,
                        outputs=[review_queue.HeldOutput(name=m.output.name, inputs=m.inputs, steps=m.steps) for m in made],
                        every_output=sorted(every_output), reasons=reasons, run=current_run(),
                        keep_versions=recipe.versions.keep,
                    )  # fmt: skip
                    held_dir = review_queue.hold(made, out_root, asset.folder_name, waiting)
                    return AssetResult.held(asset, held_dir, [m.output.name for m in made], reasons)
                outputs = publish_outputs(made, final_dir, recipe_sha256, recipe.provenance.training_mining,
                                          keep_versions=recipe.versions.keep)  # fmt: skip
            except (OSError, AssetlineError) as exc:  # a full disk, an unwritable folder: named as the user sees it
                stated = restate_staged_error(exc, stage, final_dir)
                if stated is None:
                    raise
                raise stated from exc
        remove_stale(final_dir, every_output - {p.name for p in outputs})
    return AssetResult.done(asset, final_dir, outputs, note)


def awaiting_or_rejected(asset: Asset, out_root: Path, recipe_sha256: str) -> AssetResult | None:
    """This input and recipe's outputs held for review ("review"), or a reviewer's rejection of them ("rejected")."""
    from assetline.review import held as review_queue

    waiting = review_queue.read_held(out_root, asset.folder_name)
    if waiting is not None and (waiting.sha256, waiting.recipe_sha256) == (asset.sha256, recipe_sha256):
        held_dir = review_queue.held_dir(out_root, asset.folder_name)
        return AssetResult.held(asset, held_dir, [o.name for o in waiting.outputs], waiting.reasons)
    refused = review_queue.rejected(out_root, asset.folder_name, asset.sha256, recipe_sha256)
    if refused is not None:
        r = refused.review
        said = f": {r.comment}" if r.comment else ""
        return AssetResult(str(asset.path), "rejected", asset.kind, asset.sha256, None, [],
                           f"rejected by {r.by} at {r.at}{said} (assetline run --retry-rejected offers it again)")  # fmt: skip
    return None


def publish_outputs(
    made: list[Made], final_dir: Path, recipe_sha256: str, training_mining: str,
    review: ReviewRecord | None = None, run: RunRef | None = None, keep_versions: int = 5,
) -> list[Path]:  # fmt: skip
    """Sign each staged output and write its sidecars beside it, then move outputs, then sidecars, into `final_dir`.

    What `final_dir` held is kept first as the previous version (`versions.py`:
    `.versions/vNNN/`); each new manifest records its version number and the
    previous version's sha256 of the same output, and `keep_versions` versions
    stay, the current one counted.

    Every output gets Content Credentials the same way, whatever its kind: a
    C2PA manifest inside it (PNG, JPEG, MP4) or in `X.c2pa` (text), then the
    JSON sidecar recording its final bytes. Outputs are signed in the order
    made, so one made from an earlier one (upscaled.png from cutout.png)
    names the signed file and chains to its manifest. Sidecars move last so
    that a sidecar never names a file that is not there yet. `review` (an
    approval) goes into every manifest; `run` is the run that made the outputs
    when they are delivered later, from another process.
    """
    from assetline.provenance.credentials import c2pa_sidecar_for
    from assetline.provenance.signing import content_signer

    from assetline import versions

    from assetline.orchestration import in_work_pool_run

    run = run or current_run()
    # A worker signs with the cluster's one key, handed to it; a development CA of its own would be one per machine.
    signer, _ = content_signer(training_mining, create=not in_work_pool_run())
    number, replaced = versions.archive_current(final_dir)
    files, stores, sidecars = [], [], []
    signed: dict[str, InputRef] = {}  # outputs of this run, as they are once signed
    for item in made:
        inputs = [signed.get(ref.path, ref) if ref.role == "intermediate" else ref for ref in item.inputs]
        previous = replaced.previous_of(item.output.name) if replaced else None
        manifest = build_manifest(item.output, inputs, item.steps, recipe_sha256, run, number, previous)
        if review is not None:
            manifest = manifest.model_copy(update={"review": review})
        sidecars.append(write_manifest(item.output, manifest, signer))
        files.append(item.output)
        stores += [p for p in (c2pa_sidecar_for(item.output),) if p.is_file()]
        signed[item.output.name] = intermediate_ref(item.output)
    moved = publish(files + stores + sidecars, final_dir)
    versions.prune(final_dir, keep_versions)
    return moved[: len(files)]


def remove_stale(final_dir: Path, names: set[str]) -> None:
    """Remove outputs an earlier recipe made that this one no longer does, sidecar first."""
    for name in sorted(names):
        sidecar_for(final_dir / name).unlink(missing_ok=True)
        (final_dir / (name + ".c2pa")).unlink(missing_ok=True)  # its C2PA manifest store, for text outputs
        (final_dir / name).unlink(missing_ok=True)
