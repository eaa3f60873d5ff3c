"""Checking outputs: against their JSON sidecars (schema, bytes, hash, the chain of inputs) and
their Content Credentials (C2PA validation, trust, the ingredient chain, agreement with the JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from assetline.errors import AssetlineError
from assetline.keys import trust_anchors
from assetline.provenance.credentials import C2PA_SUFFIX, PROVENANCE_LABEL, c2pa_sidecar_for, embeds, read_credentials
from assetline.provenance.manifest import IPTC, SCHEMA, SIDECAR_SUFFIX, Manifest, first_difference, sidecar_for, signed_view
from assetline.storage import STAGING_DIR, sha256_file


@dataclass
class Verdict:
    """The outcome for one output: `problems` empty means it checks out."""

    output: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    credentials: Any = None  # provenance.credentials.Credentials, when the output has any
    anchors: str | None = None  # where the trust anchors came from

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


_CONFIGURED: Any = object()  # verify_output's default: the trust anchors configured (see assetline.keys)


def verify_output(output: Path, anchors: Any = _CONFIGURED, require_trust: bool = True,
                  hashes: dict[Path, str] | None = None) -> Verdict:  # fmt: skip
    """Check one output file against `output.provenance.json` and its Content Credentials.

    One line per finding: a tampered output gets one line saying what was
    done to it (altered, replaced by another output, sidecar edited, signed
    outside the trust anchors), not every check that noticed.

    `require_trust=False` asks only whether the output is intact and is what
    its sidecar says (the freshness question of a rerun): its bytes, its C2PA
    signature and hard binding (validation state Valid or Trusted), the JSON's
    agreement with the signed manifest, the chain, its inputs. Whether the
    signer is on a trust list is left out: no trust anchors are loaded (unless
    `anchors` is given), and neither an untrusted signer nor unreadable anchors
    is a finding. `assetline verify` keeps the default, which also requires trust.

    `hashes` (resolved path -> sha256) are files already hashed in this run, the
    source among them; files hashed here are added, so checking several outputs
    of one asset hashes each file once.
    """
    hashes = {} if hashes is None else hashes

    def sha256_of(path: Path) -> str:
        key = path.resolve()
        if key not in hashes:
            hashes[key] = sha256_file(path)
        return hashes[key]

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
    if not output.is_file():
        if manifest.output.path != output.name:
            verdict.problems.append(f"sidecar describes {manifest.output.path!r}, not this file")
        verdict.problems.append("output file is missing")
        return verdict
    size, actual = output.stat().st_size, sha256_of(output)
    content_differs = size != manifest.output.bytes or actual != manifest.output.sha256
    if anchors is _CONFIGURED and not require_trust:
        anchors = None  # integrity only: c2pa still checks the signature and binding, trust aside
    elif anchors is _CONFIGURED:
        try:
            anchors, verdict.anchors = trust_anchors()
        except AssetlineError as exc:
            verdict.problems.append(f"trust anchors: {exc.line()}")
            anchors = None
    credentials = read_credentials(output, anchors)
    verdict.credentials = credentials

    swapped = None  # the output of the same run whose content this file really is
    if credentials is not None and credentials.intact and credentials.title and credentials.title != output.name:
        swapped = credentials.title
    elif content_differs:
        swapped = _sibling_with(output, actual)
    if swapped:
        verdict.problems.append(f"replaced by another output of the run: this is {swapped!r}, not {output.name!r}")
    else:
        if manifest.output.path != output.name:
            verdict.problems.append(f"sidecar describes {manifest.output.path!r}, not this file")
        _check_content(verdict, manifest, size, content_differs, credentials)
    if manifest.steps and manifest.steps[-1].output != output.name and not swapped:
        verdict.problems.append(f"last step produced {manifest.steps[-1].output!r}, not this file")
    for ref in manifest.inputs:
        path = Path(ref.path) if Path(ref.path).is_absolute() else output.parent / ref.path
        if not path.is_file():
            if ref.role == "intermediate":
                verdict.problems.append(f"intermediate input {ref.path} is missing")
            else:
                verdict.notes.append(f"source {ref.path} not reachable here: not re-checked")
            continue
        if sha256_of(path) != ref.sha256:
            what = "intermediate" if ref.role == "intermediate" else "source"
            verdict.problems.append(f"{what} input {ref.path} has changed since (sha256 differs)")
    if credentials is not None and credentials.intact and not swapped:
        _check_credentials(verdict, manifest, credentials, require_trust)
    if manifest.previous is not None and require_trust:  # the history, back through .versions/ (not for freshness)
        from assetline.versions import walk

        notes, problems = walk(output, manifest, sha256_of)
        verdict.notes += notes
        verdict.problems += problems
    return verdict


def _check_content(verdict: Verdict, manifest: Manifest, size: int, content_differs: bool, credentials) -> None:
    """The file's bytes against the JSON sidecar and the C2PA hard binding: at most two lines."""
    output = verdict.output
    broken = credentials is not None and not credentials.intact
    if content_differs:
        detail = "sha256 differs" if size == manifest.output.bytes else f"size is {size} bytes, manifest says {manifest.output.bytes}"
        if credentials is not None and credentials.intact:
            verdict.problems.append(f"content does not match the manifest ({detail} from the JSON sidecar, while its "
                                    "signed C2PA manifest validates the file): the JSON sidecar was edited")  # fmt: skip
        else:
            also = f"; {credentials.problem()}" if broken else ""
            verdict.problems.append(f"content does not match the manifest ({detail}{also}): altered since it was made")
    elif broken:
        verdict.problems.append(f"{credentials.problem()}: its Content Credentials were altered")
    if credentials is None:
        where = "embedded" if embeds(output) else f"beside it ({c2pa_sidecar_for(output).name})"
        verdict.problems.append(f"no Content Credentials: no C2PA manifest {where}")


def _check_credentials(verdict: Verdict, manifest: Manifest, credentials, require_trust: bool = True) -> None:
    """An intact C2PA manifest: the JSON agrees with it, it chains to an input, its signer is trusted
    (with `require_trust`; without, its validation state is Valid or Trusted)."""
    signed = credentials.signed_sidecar()
    if signed is None:
        verdict.problems.append(f"C2PA manifest has no {PROVENANCE_LABEL} assertion: the JSON sidecar is not bound to it")
    else:
        where = first_difference(signed_view(manifest), signed)
        if where:
            verdict.problems.append(f"JSON sidecar disagrees with its signed C2PA manifest at {where}: edited since it was signed")
        elif (manifest.signature or {}).get("manifest") != credentials.label:
            verdict.problems.append(f"JSON sidecar names C2PA manifest {(manifest.signature or {}).get('manifest')!r}, "
                                    f"the file carries {credentials.label!r}")  # fmt: skip
    chain = credentials.chain()
    names = {Path(ref.path).name for ref in manifest.inputs}
    if len(chain) < 2:
        verdict.problems.append("C2PA manifest has no parentOf ingredient: not chained to its input")
    elif chain[1] not in names:
        verdict.problems.append(f"C2PA parent ingredient {chain[1]!r} is not an input the sidecar names")
    info = credentials.signature_info
    signer = f"{info.get('common_name') or '?'!r} (issuer {info.get('issuer') or '?'!r})"
    if not require_trust:
        if credentials.state not in ("Valid", "Trusted"):
            verdict.problems.append(f"C2PA validation state is {credentials.state}, not Valid")
    elif credentials.untrusted:
        verdict.problems.append(f"signed by a key outside the trust anchors: {signer}; anchors: {verdict.anchors or 'none'}")
    elif not credentials.trusted:
        verdict.problems.append(f"C2PA validation state is {credentials.state}, not Trusted")
    ai = manifest.ai_disclosure.digital_source_type.removeprefix(IPTC)
    verdict.notes.append(f"C2PA {credentials.state}, signer {signer}; AI: {ai}; chain: {' <- '.join(chain)}")


def _sibling_with(output: Path, sha256: str) -> str | None:
    """Another output in the same folder whose sidecar records exactly this content."""
    for other in sorted(output.parent.glob(f"*{SIDECAR_SUFFIX}")):
        name = other.name[: -len(SIDECAR_SUFFIX)]
        if name == output.name:
            continue
        try:
            if Manifest.model_validate_json(other.read_bytes()).output.sha256 == sha256:
                return name
        except (OSError, ValidationError):
            continue
    return None


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def outputs_in(folder: Path) -> list[Path]:
    """Every output under `folder`: each non-hidden file, and the file each stray sidecar names."""
    found: set[Path] = set()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or _is_hidden(path, folder) or STAGING_DIR in path.parts:
            continue
        for suffix in (SIDECAR_SUFFIX, C2PA_SUFFIX):  # a sidecar stands for the output it names
            if path.name.endswith(suffix):
                found.add(path.with_name(path.name[: -len(suffix)]))
                break
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
        elif path.name.endswith(C2PA_SUFFIX):
            verdicts.append(verify_output(path.with_name(path.name[: -len(C2PA_SUFFIX)])))
        elif path.exists():
            verdicts.append(verify_output(path))
        else:
            verdicts.append(Verdict(path, problems=["no such file or folder"]))
    return verdicts
