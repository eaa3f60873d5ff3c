"""An asset's versions: the current one in `OUT/<asset>/`, earlier ones in `OUT/<asset>/.versions/vNNN/`.

A new version is made whenever outputs are delivered over ones already there: a
recipe change, an approval, a rerun after a rejection. Before the new outputs are
signed, the current set is archived (`archive_current`): a hard link (a copy where
links are refused) of each output, its C2PA store and its sidecar, gathered in a
hidden folder and renamed to `vNNN` at once. Each new manifest records its version
and the previous version's sha256 of the same output (`PreviousRef`); the new
outputs then replace the old ones file by file (`storage.publish`), so no path
downstream ever goes missing. A crash between the two leaves the archive and the
current set both whole: the next run archives nothing twice.

`prune` keeps `versions.keep` versions, the current one counted: the oldest
archived go first, never the current one, nor the latest a person approved.
All of it runs under the asset's lock (`storage.asset_lock`).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from assetline.provenance.credentials import c2pa_sidecar_for
from assetline.provenance.manifest import SIDECAR_SUFFIX, Manifest, PreviousRef, ReviewRecord, sidecar_for
from assetline.storage import sha256_file

VERSIONS_DIR = ".versions"
_ARCHIVED = re.compile(r"^v(\d{3,})$")
_GATHERING = ".new-"


def version_dir(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:03d}"


@dataclass
class Version:
    """One version of an asset: its number, where its files are, and each output's manifest."""

    number: int
    folder: Path
    manifests: dict[str, Manifest]  # output name -> manifest
    current: bool = False

    @property
    def created_at(self) -> str:
        return max((m.created_at for m in self.manifests.values()), default="")

    @property
    def recipe_sha256(self) -> str:
        return next((m.recipe_sha256 for m in self.manifests.values()), "")

    @property
    def review(self) -> ReviewRecord | None:
        return next((m.review for m in self.manifests.values() if m.review is not None), None)


def read_set(folder: Path) -> dict[str, Manifest]:
    """The outputs in `folder` that have a readable sidecar, each with its manifest."""
    found: dict[str, Manifest] = {}
    try:
        sidecars = sorted(folder.glob(f"*{SIDECAR_SUFFIX}"))
    except OSError:
        return found
    for sidecar in sidecars:
        try:
            found[sidecar.name[: -len(SIDECAR_SUFFIX)]] = Manifest.model_validate_json(sidecar.read_bytes())
        except (OSError, ValidationError):
            continue  # not ours to judge here: verify names it
    return found


def _number(manifests: dict[str, Manifest]) -> int:
    return max((m.version for m in manifests.values()), default=0)


def archived(asset_dir: Path) -> list[Version]:
    """The earlier versions kept under `.versions/`, oldest first."""
    found = []
    try:
        entries = list(os.scandir(asset_dir / VERSIONS_DIR))
    except OSError:
        return found
    for entry in entries:
        match = _ARCHIVED.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.append(Version(int(match.group(1)), Path(entry.path), read_set(Path(entry.path))))
    return sorted(found, key=lambda v: v.number)


def _archived_numbers(asset_dir: Path) -> list[int]:
    """The numbers of the versions under `.versions/`, from the folder names alone."""
    try:
        names = os.listdir(asset_dir / VERSIONS_DIR)
    except OSError:
        return []
    return [int(m.group(1)) for m in map(_ARCHIVED.match, names) if m]


def history(asset_dir: Path) -> list[Version]:
    """Every version kept of the asset, oldest first; the last is the current one when there is one."""
    versions = archived(asset_dir)
    current = read_set(asset_dir)
    if current:
        versions.append(Version(_number(current), asset_dir, current, current=True))
    return versions


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # a file system without hard links
        shutil.copy2(source, dest)


@dataclass
class Archived:
    """The version that was current before this delivery, now under `.versions/`."""

    number: int
    outputs: dict[str, str]  # output name -> sha256

    def previous_of(self, name: str) -> PreviousRef | None:
        sha256 = self.outputs.get(name)
        if sha256 is None:
            return None
        return PreviousRef(version=self.number, path=f"{version_dir(self.number)}/{name}", sha256=sha256)


def archive_current(
    asset_dir: Path, publishing: list[str] = (), recipe_sha256: str = "", sources: set[str] = frozenset()
) -> tuple[int, Archived | None]:  # fmt: skip
    """Archive the current outputs of `asset_dir`; the next version's number and what was archived (None: nothing).

    `publishing` are the outputs about to be delivered, from `recipe_sha256` and the
    input(s) `sources`. Where they complete the current version (another group of
    the same run, or a run that resumes one cut short after its first group: the
    newest outputs there are from this recipe and input, and none of them is being
    replaced), nothing is archived: they join it, and their previous version is the
    one archived when it began.
    """
    root = asset_dir / VERSIONS_DIR
    for stale in root.glob(f"{_GATHERING}*"):  # a gathering cut short by a crash (we hold the asset's lock)
        shutil.rmtree(stale, ignore_errors=True)
    current = read_set(asset_dir)
    kept = _archived_numbers(asset_dir)
    if not current:
        return max(kept, default=0) + 1, None
    number = max(_number(current), 1)
    if recipe_sha256 and _completes(current, number, set(publishing), recipe_sha256, sources):
        before = max((n for n in kept if n < number), default=None)
        if before is None:
            return number, None
        return number, Archived(before, {name: m.output.sha256 for name, m in read_set(root / f"v{before:03d}").items()})
    target = root / f"v{number:03d}"
    if not target.exists():  # else archived already, by a run that crashed before it published
        gathering = root / f"{_GATHERING}v{number:03d}.{uuid.uuid4().hex[:8]}"
        gathering.mkdir(parents=True)
        for name in current:
            output = asset_dir / name
            for path in (output, c2pa_sidecar_for(output), sidecar_for(output)):
                if path.is_file():
                    _link_or_copy(path, gathering / path.name)
        os.rename(gathering, target)
    following = max([number, *kept]) + 1
    return following, Archived(number, {name: m.output.sha256 for name, m in current.items()})


def _completes(current: dict[str, Manifest], number: int, publishing: set[str], recipe_sha256: str, sources: set[str]) -> bool:
    """True when outputs `publishing` are the rest of version `number`, which is current, begun by the same recipe and input."""
    newest = {name: m for name, m in current.items() if m.version == number}
    if not newest or not sources or publishing & set(newest):
        return False
    return all(
        m.recipe_sha256 == recipe_sha256 and {r.sha256 for r in m.inputs if r.role == "source"} == sources
        for m in newest.values()
    )  # fmt: skip


def prune(asset_dir: Path, keep: int) -> list[int]:
    """Remove the oldest archived versions beyond `keep` (the current one counted); the numbers removed.

    Never the current one, nor the latest version a person approved.
    """
    every = history(asset_dir)
    approved = [v for v in every if v.review is not None and v.review.decision == "approve"]
    protected = approved[-1].number if approved else None
    excess = len(every) - keep
    removed = []
    for version in every:
        if excess <= 0:
            break
        if version.current or version.number == protected:
            continue
        shutil.rmtree(version.folder, ignore_errors=True)
        removed.append(version.number)
        excess -= 1
    return removed


def asset_dir_of(output: Path) -> Path:
    """The asset folder an output belongs to: its own folder, or the one above `.versions/vNNN/`."""
    folder = output.parent
    if _ARCHIVED.match(folder.name) and folder.parent.name == VERSIONS_DIR:
        return folder.parent.parent
    return folder


def walk(output: Path, manifest: Manifest, sha256_of=sha256_file) -> tuple[list[str], list[str]]:
    """Follow an output's previous versions back as far as they are kept: (notes, problems).

    Each previous file must still have the sha256 its successor's manifest recorded.
    A version no longer kept (pruned by `versions.keep`) ends the walk, as a note.
    """
    asset_dir = asset_dir_of(output)
    seen = [f"v{manifest.version}"]
    problems: list[str] = []
    previous, name = manifest.previous, output.name
    while previous is not None:
        path = asset_dir / previous.path
        if not path.is_file():
            seen.append(f"v{previous.version} (not kept)")
            break
        if sha256_of(path) != previous.sha256:
            problems.append(f"previous version v{previous.version} ({previous.path}) has changed since (sha256 differs)")
            break
        seen.append(f"v{previous.version}")
        try:
            earlier = Manifest.model_validate_json(sidecar_for(path).read_bytes())
        except (OSError, ValidationError):
            problems.append(f"previous version v{previous.version} of {name} has no readable sidecar")
            break
        previous = earlier.previous
    notes = [f"versions: {' <- '.join(seen)}"] if len(seen) > 1 else []
    return notes, problems
