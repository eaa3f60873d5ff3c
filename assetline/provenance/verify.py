"""Checking outputs against their sidecars: schema, bytes, hash, and the chain of inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from assetline.provenance.manifest import SCHEMA, SIDECAR_SUFFIX, Manifest, sidecar_for
from assetline.storage import STAGING_DIR, sha256_file


@dataclass
class Verdict:
    """The outcome for one output: `problems` empty means it checks out."""

    output: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Manifest | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _load(sidecar: Path) -> tuple[Manifest | None, str | None]:
    try:
        raw = sidecar.read_bytes()
    except OSError as exc:
        return None, f"cannot read sidecar: {exc.strerror}"
    try:
        return Manifest.model_validate_json(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        if first["type"] == "json_invalid":
            return None, "sidecar is not valid JSON"
        if where == "schema":
            return None, f"sidecar schema is not {SCHEMA}"
        return None, f"sidecar does not match {SCHEMA} ({where}: {first['msg']})"


def verify_output(output: Path) -> Verdict:
    """Check one output file against `output.provenance.json`."""
    verdict = Verdict(output)
    sidecar = sidecar_for(output)
    if not sidecar.is_file():
        verdict.problems.append("no provenance sidecar")
        return verdict
    manifest, error = _load(sidecar)
    if error:
        verdict.problems.append(error)
        return verdict
    verdict.manifest = manifest
    if manifest.output.path != output.name:
        verdict.problems.append(f"sidecar describes {manifest.output.path!r}, not this file")
    if not output.is_file():
        verdict.problems.append("output file is missing")
        return verdict
    size = output.stat().st_size
    if size != manifest.output.bytes:
        verdict.problems.append(f"size is {size} bytes, manifest says {manifest.output.bytes}")
    elif sha256_file(output) != manifest.output.sha256:
        verdict.problems.append("content does not match the manifest (sha256 differs): altered since it was made")
    if manifest.steps and manifest.steps[-1].output != output.name:
        verdict.problems.append(f"last step produced {manifest.steps[-1].output!r}, not this file")
    for ref in manifest.inputs:
        path = Path(ref.path) if Path(ref.path).is_absolute() else output.parent / ref.path
        if not path.is_file():
            if ref.role == "intermediate":
                verdict.problems.append(f"intermediate input {ref.path} is missing")
            else:
                verdict.notes.append(f"source {ref.path} not reachable here: not re-checked")
            continue
        if sha256_file(path) != ref.sha256:
            what = "intermediate" if ref.role == "intermediate" else "source"
            verdict.problems.append(f"{what} input {ref.path} has changed since (sha256 differs)")
    if manifest.signature is None:
        verdict.notes.append("unsigned (provenance v1)")
    return verdict


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def outputs_in(folder: Path) -> list[Path]:
    """Every output under `folder`: each non-hidden file, and the file each stray sidecar names."""
    found: set[Path] = set()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or _is_hidden(path, folder) or STAGING_DIR in path.parts:
            continue
        if path.name.endswith(SIDECAR_SUFFIX):
            found.add(path.with_name(path.name[: -len(SIDECAR_SUFFIX)]))
        else:
            found.add(path)
    return sorted(found)


def verify_paths(paths: list[Path]) -> list[Verdict]:
    """Verify files and folders (recursively). A sidecar given directly checks its output."""
    verdicts = []
    for path in paths:
        if path.is_dir():
            verdicts.extend(verify_output(p) for p in outputs_in(path))
        elif path.name.endswith(SIDECAR_SUFFIX):
            verdicts.append(verify_output(path.with_name(path.name[: -len(SIDECAR_SUFFIX)])))
        elif path.exists():
            verdicts.append(verify_output(path))
        else:
            verdicts.append(Verdict(path, problems=["no such file or folder"]))
    return verdicts
