"""Assets held for review: `OUT/.review/<asset>/` (the outputs, unsigned, and `held.json`), and what a
decision does with them: approve signs them with the review in their manifests and moves them into
`OUT/<asset>/`; reject delivers nothing and records the rejection (`OUT/.review/.rejected/<asset>.json`),
so the same input and recipe are not offered again.

Outputs are signed once, on delivery: a manifest records who approved the bytes it signs. Holding and
delivering go through the same staging, per-asset lock and publish as any output (storage.py).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from assetline.errors import AssetlineError
from assetline.provenance.manifest import InputRef, ReviewReason, ReviewRecord, RunRef, StepRecord, utc_now
from assetline.storage import asset_lock, publish, staging_folder, write_atomically

REVIEW_DIR = ".review"
REJECTED_DIR = ".rejected"
HELD_FILE = "held.json"


class ReviewError(AssetlineError):
    """A review that cannot be done as asked (no such asset held, a name that fits several)."""


class HeldOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    inputs: list[InputRef]
    steps: list[StepRecord]


class HeldAsset(BaseModel):
    """`held.json`: what is waiting, why, and everything needed to deliver it later, in any process."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field("assetline/held@1", alias="schema")
    source: str  # the input's path as the run saw it
    sha256: str
    kind: str
    folder: str  # OUT/<folder>/ is where it goes
    recipe_sha256: str
    training_mining: str
    outputs: list[HeldOutput]  # in the order made (and signed)
    every_output: list[str]  # outputs a recipe may make for the kind: the ones this one no longer does go
    reasons: list[ReviewReason]
    run: RunRef
    held_at: str = Field(default_factory=utc_now)
    keep_versions: int = 5  # the recipe's versions.keep, for the delivery

    def to_json(self) -> bytes:
        return (self.model_dump_json(by_alias=True, indent=2) + "\n").encode()


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    recipe_sha256: str
    review: ReviewRecord


def review_root(out_root: Path) -> Path:
    return out_root / REVIEW_DIR


def held_dir(out_root: Path, folder: str) -> Path:
    return review_root(out_root) / folder


def read_held(out_root: Path, folder: str) -> HeldAsset | None:
    try:
        return HeldAsset.model_validate_json((held_dir(out_root, folder) / HELD_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def held_assets(out_root: Path) -> list[HeldAsset]:
    """Every asset waiting under `out_root`, oldest first."""
    try:
        names = sorted(p.name for p in review_root(out_root).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    found = [h for h in (read_held(out_root, n) for n in names) if h is not None]
    return sorted(found, key=lambda h: h.held_at)


def hold(made: list, out_root: Path, folder: str, held: HeldAsset) -> Path:
    """Move staged outputs (`made`, flows/_asset.Made) into `OUT/.review/<folder>/`, whole, with `held.json`.

    They are gathered in a hidden folder beside it and renamed into place at once;
    an earlier hold of the same asset (another recipe) is replaced.
    """
    root = review_root(out_root)
    gathering = root / f".new-{folder}.{uuid.uuid4().hex[:8]}"
    publish([m.output for m in made], gathering)
    write_atomically(gathering / HELD_FILE, held.to_json())
    final = held_dir(out_root, folder)
    if final.exists():
        shutil.rmtree(final)
    os.rename(gathering, final)
    return final


def rejection_path(out_root: Path, folder: str) -> Path:
    return review_root(out_root) / REJECTED_DIR / f"{folder}.json"


def read_rejection(out_root: Path, folder: str) -> Rejection | None:
    """The last rejection of the asset `folder`, whatever its recipe; None when there is none."""
    try:
        return Rejection.model_validate_json(rejection_path(out_root, folder).read_bytes())
    except (OSError, ValueError):
        return None


def rejected(out_root: Path, folder: str, sha256: str, recipe_sha256: str) -> Rejection | None:
    """The rejection of this very input and recipe, when a reviewer gave one."""
    record = read_rejection(out_root, folder)
    return record if record is not None and (record.sha256, record.recipe_sha256) == (sha256, recipe_sha256) else None


def forget_rejection(out_root: Path, folder: str) -> bool:
    """Offer the asset again (`assetline run --retry-rejected`); True when there was a rejection."""
    path = rejection_path(out_root, folder)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


@dataclass
class Decision:
    """What a reviewer decided (the RunInput form and the CLI both give one)."""

    decision: str  # approve | reject
    by: str
    comment: str = ""

    def record(self, reasons: list[ReviewReason]) -> ReviewRecord:
        return ReviewRecord(decision=self.decision, by=self.by.strip(), at=utc_now(), comment=self.comment, reasons=reasons)


def check_decision(decision: str, by: str) -> None:
    if decision not in ("approve", "reject"):
        raise ReviewError(None, f"unknown decision {decision!r} (approve or reject)")
    if not by.strip():
        raise ReviewError(None, "the reviewer's name is empty")


def decide(out_root: Path, folder: str, decision: Decision) -> tuple[ReviewRecord, list[Path]]:
    """Carry out a decision on the asset held as `folder`: its record and the outputs delivered (none on reject)."""
    check_decision(decision.decision, decision.by)
    with asset_lock(out_root, folder):
        held = read_held(out_root, folder)
        if held is None:
            raise ReviewError(held_dir(out_root, folder), "no asset awaits review here")
        record = decision.record(held.reasons)
        delivered: list[Path] = []
        if record.decision == "approve":
            delivered = _deliver(out_root, held, record)
        else:
            rejection = Rejection(sha256=held.sha256, recipe_sha256=held.recipe_sha256, review=record)
            write_atomically(rejection_path(out_root, folder), (rejection.model_dump_json(indent=2) + "\n").encode())
        shutil.rmtree(held_dir(out_root, folder), ignore_errors=True)
    return record, delivered


def _deliver(out_root: Path, held: HeldAsset, record: ReviewRecord) -> list[Path]:
    """Copy the held outputs into a staging folder, sign them with the review, publish into OUT/<folder>/."""
    from assetline.flows._asset import Made, publish_outputs, remove_stale

    source = held_dir(out_root, held.folder)
    final_dir = out_root / held.folder
    with staging_folder(out_root, held.folder) as stage:
        made = []
        for item in held.outputs:
            shutil.copy2(source / item.name, stage / item.name)  # the held copy stays until all is delivered
            made.append(Made(stage / item.name, list(item.inputs), list(item.steps)))
        outputs = publish_outputs(made, final_dir, held.recipe_sha256, held.training_mining, review=record, run=held.run,
                                  keep_versions=held.keep_versions)  # fmt: skip
    remove_stale(final_dir, set(held.every_output) - {p.name for p in outputs})
    return outputs
