"""What every asset flow shares: the up-to-date check, staging, sidecars, and the move into place.

A flow describes its steps as a function of the staging folder returning what
it made (`Made`: an output, its inputs, the steps that led to it); `produce`
does the rest the same way for every kind of asset.
"""

from __future__ import annotations

import time
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
    groups: dict[str, float] = field(default_factory=dict)  # output group -> seconds until delivered (or held)

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

    def group_times(self) -> str:
        """When each output group went out (or was held), after the asset's steps began: "subtitles at 4.1s · picture at 30.2s"."""
        return " · ".join(f"{name} at {seconds:.1f}s" for name, seconds in self.groups.items())


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


@dataclass
class OutputGroup:
    """Outputs delivered together, whole, as soon as they are made: a footage run's transcript and
    subtitles are one group and go out before its picture, the other, is rendered.

    `make(stage, earlier)` stages the group's outputs; `earlier` holds the outputs
    of the groups before it, by name: delivered ones where they now are (with the
    inputs and steps their manifests record), held ones still in the staging folder.
    `extra` are outputs it may also make (a translation), never expected.
    """

    name: str
    wanted: list[str]
    make: Callable[[Path, dict[str, Made]], list[Made]]
    extra: tuple[str, ...] = ()


def produce(
    asset: Asset,
    out_root: Path,
    recipe: Recipe,
    wanted: list[str],
    every_output: set[str],
    make: Callable[[Path], list[Made]],
    note: str = "",
) -> AssetResult:
    """Run `make` in a staging folder and publish what it made, unless the outputs are up to date: one group."""
    return produce_groups(asset, out_root, recipe, [OutputGroup("outputs", wanted, lambda stage, _: make(stage))], every_output, note)


def produce_groups(
    asset: Asset, out_root: Path, recipe: Recipe, groups: list[OutputGroup], every_output: set[str], note: str = ""
) -> AssetResult:
    """Make each group in a staging folder and publish it whole, in turn, unless the outputs are up to date.

    A group whose outputs are up to date (from this input and recipe) is not
    made again: a run cut short after its first group makes only the rest.
    Outputs in `every_output` that the recipe no longer makes are removed once
    every group is delivered. The recipe is the run's own, carried here: its
    hash for the kind names the outputs' recipe, its provenance section goes
    into their signed manifests. The groups of one run make one version
    (`versions.archive_current`).

    The recipe's review policy (`review.policy.review_reasons`) decides what
    follows each group: delivery now, or the group held (result status
    "review") with every group after it, whole, in `OUT/.review/<asset>/`
    until a person decides. A held asset is not made again while it waits;
    one a reviewer rejected is not offered again for the same input and
    recipe (status "rejected"). `result.groups` says when each group was
    delivered or held, in seconds from the start here.
    """
    from assetline.review import held as review_queue
    from assetline.review.policy import review_reasons

    recipe_sha256 = recipe.section_sha256(asset.kind)
    final_dir = out_root / asset.folder_name
    wanted = [name for g in groups for name in g.wanted]

    def already() -> AssetResult | None:
        if is_up_to_date(asset, out_root, wanted, recipe_sha256):
            return AssetResult.skipped(asset, final_dir, wanted)
        return awaiting_or_rejected(asset, out_root, recipe_sha256)

    if (found := already()) is not None:
        return found
    start = time.perf_counter()
    times: dict[str, float] = {}
    with asset_lock(out_root, asset.folder_name):  # another run on the same content waits, then skips
        if (found := already()) is not None:
            return found
        remove_stale_temporaries(final_dir)  # a write cut short by a killed process
        delivered: dict[str, Made] = {}  # outputs of earlier groups, where they are now
        held: list[Made] = []  # outputs waiting for a person, with the groups after them
        with staging_folder(out_root, asset.folder_name) as stage:
            try:
                for group in groups:
                    if not group.wanted:
                        continue
                    if len(groups) > 1 and not held and is_up_to_date(asset, out_root, group.wanted, recipe_sha256):
                        delivered |= _delivered(final_dir, [*group.wanted, *group.extra], recipe_sha256, asset.sha256)
                        continue
                    made = group.make(stage, delivered | {m.output.name: m for m in held})
                    reasons = review_reasons(asset.kind, held + made, recipe) if made else []
                    times[group.name] = round(time.perf_counter() - start, 2)
                    if reasons:
                        held += made
                        continue
                    outputs = publish_outputs(made, final_dir, recipe_sha256, recipe.provenance.training_mining,
                                              keep_versions=recipe.versions.keep)  # fmt: skip
                    delivered |= {p.name: Made(p, m.inputs, m.steps) for p, m in zip(outputs, made)}
                    if len(groups) > 1:
                        _say_delivered(asset, group, outputs, times[group.name])
                if held:
                    reasons = review_reasons(asset.kind, held, recipe)
                    waiting = review_queue.HeldAsset(
                        source=str(asset.path), sha256=asset.sha256, kind=asset.kind, folder=asset.folder_name,
                        recipe_sha256=recipe_sha256, training_mining=recipe.provenance.training_mining,
                        outputs=[review_queue.HeldOutput(name=m.output.name, inputs=m.inputs, steps=m.steps) for m in held],
                        every_output=sorted(every_output - set(delivered)), reasons=reasons, run=current_run(),
                        keep_versions=recipe.versions.keep,
                    )  # fmt: skip
                    held_dir = review_queue.hold(held, out_root, asset.folder_name, waiting)
                    result = AssetResult.held(asset, held_dir, [m.output.name for m in held], reasons)
                    result.groups = times
                    return result
            except (OSError, AssetlineError) as exc:  # a full disk, an unwritable folder: named as the user sees it
                stated = restate_staged_error(exc, stage, final_dir)
                if stated is None:
                    raise
                raise stated from exc
        remove_stale(final_dir, every_output - set(delivered))
    result = AssetResult.done(asset, final_dir, [m.output for m in delivered.values()], note)
    result.groups = times if len(groups) > 1 else {}
    return result


def _delivered(final_dir: Path, names: list[str], recipe_sha256: str, source_sha256: str) -> dict[str, Made]:
    """An up-to-date group's outputs in `final_dir`, with the inputs and steps their manifests record."""
    from assetline import versions

    found = versions.read_set(final_dir)
    return {
        name: Made(final_dir / name, list(m.inputs), list(m.steps))
        for name in names
        if (m := found.get(name)) is not None and m.recipe_sha256 == recipe_sha256
        and any(ref.role == "source" and ref.sha256 == source_sha256 for ref in m.inputs)
    }  # fmt: skip


def _say_delivered(asset: Asset, group: OutputGroup, outputs: list[Path], seconds: float) -> None:
    """A group delivered before the rest: said in the run's log, which the Prefect UI shows."""
    import logging

    try:
        from prefect import get_run_logger

        logger = get_run_logger()
    except Exception:  # outside a run
        logger = logging.getLogger(__name__)
    logger.info("%s: %s delivered after %.1f s (%s)", asset.path.name, group.name, seconds, ", ".join(p.name for p in outputs))


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
    sources = {ref.sha256 for item in made for ref in item.inputs if ref.role == "source"}
    number, replaced = versions.archive_current(final_dir, [item.output.name for item in made], recipe_sha256, sources)
    files, stores, sidecars = [], [], []
    signed: dict[str, InputRef] = {}  # outputs of this run, as they are once signed
    _link_delivered(made, final_dir)
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


def _link_delivered(made: list[Made], final_dir: Path) -> None:
    """Link into the staging folder each intermediate an output names that is already in `final_dir`.

    An intermediate is named by its file name, in the output's own folder. One an
    earlier group delivered (subtitles.srt, muxed into video.mp4) is in
    `final_dir`, not beside the staged output: linked in with its C2PA store, the
    output's manifest carries the intermediate's as its ingredient's. Only the
    bytes the reference names are linked; the links go with the staging folder.
    """
    import os
    import shutil

    from assetline.provenance.credentials import c2pa_sidecar_for

    staged = {item.output.name for item in made}
    for item in made:
        stage = item.output.parent
        for ref in item.inputs:
            there = final_dir / ref.path
            if ref.role != "intermediate" or ref.path in staged or (stage / ref.path).exists() or not there.is_file():
                continue
            if sha256_file(there) != ref.sha256:
                continue
            for found in (there, c2pa_sidecar_for(there)):
                if found.is_file() and not (stage / found.name).exists():
                    try:
                        os.link(found, stage / found.name)
                    except OSError:  # a filesystem without hard links
                        shutil.copy2(found, stage / found.name)


def remove_stale(final_dir: Path, names: set[str]) -> None:
    """Remove outputs an earlier recipe made that this one no longer does, sidecar first."""
    for name in sorted(names):
        sidecar_for(final_dir / name).unlink(missing_ok=True)
        (final_dir / (name + ".c2pa")).unlink(missing_ok=True)  # its C2PA manifest store, for text outputs
        (final_dir / name).unlink(missing_ok=True)
