"""Content Credentials (C2PA, through c2pa-python): where an output's manifest lives, and reading it back.

PNG, JPEG and MP4 outputs carry their manifest inside the file. Outputs that
cannot (SRT, VTT, JSON) get a sidecar manifest store `X.c2pa` whose hard
binding is C2PA's own data hash (`c2pa.hash.data`) over every byte of X, so
an edited subtitle file fails validation like an edited picture does. c2pa
can't hash nothing, so a zero-byte output (the SRT of silence) is bound to a
fixed stand-in text instead, and an `org.assetline.binding` assertion says
so: a reader accepts that binding only for a file that is still empty.

What a manifest says is built in `provenance.claim`; signing is `provenance.signing`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from assetline.provenance.manifest import media_type

C2PA_SUFFIX = ".c2pa"
EMBEDDED_TYPES = ("image/png", "image/jpeg", "video/mp4", "video/quicktime")  # MOV is BMFF too: c2pa embeds it
PROVENANCE_LABEL = "org.assetline.provenance"
TRUST_FAILURES = ("signingCredential.untrusted",)
BINDING_LABEL = "org.assetline.binding"
# What a zero-byte output's data hash covers instead of its (no) bytes.
EMPTY_STAND_IN = b"assetline: this C2PA manifest binds an empty (zero-byte) file\n"
THUMBNAIL_EDGE = 512


def c2pa_sidecar_for(output: Path) -> Path:
    return output.with_name(output.name + C2PA_SUFFIX)


def embeds(path: Path) -> bool:
    """Whether the manifest goes inside the file (PNG, JPEG, MP4, MOV) rather than into `X.c2pa`."""
    return media_type(path) in EMBEDDED_TYPES


def c2pa_settings(anchors: str | None) -> dict:
    """c2pa settings: nothing fetched from the network, trust only in the configured anchors."""
    settings: dict[str, Any] = {
        "verify": {"verify_trust": True, "remote_manifest_fetch": False, "ocsp_fetch": False},
        "builder": {
            "thumbnail": {"enabled": True, "long_edge": THUMBNAIL_EDGE},
            # assetline writes its actions itself, c2pa.opened first.
            "actions": {k: {"enabled": False} for k in ("auto_created_action", "auto_opened_action", "auto_placed_action")},
        },
    }
    if anchors:
        settings["trust"] = {"trust_anchors": anchors}
    return settings


def bound_bytes(output: Path) -> IO[bytes]:
    """What a detached manifest's data hash covers: the file's bytes, or the stand-in for an empty file."""
    if output.stat().st_size == 0:
        return io.BytesIO(EMPTY_STAND_IN)
    return open(output, "rb")


def c2pa_complaint(exc: BaseException) -> str:
    """The first line of what c2pa said went wrong (its messages run on with detail)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class Credentials:
    """What a C2PA reader found for one output, under the configured trust anchors."""

    store: str  # "embedded", or the sidecar manifest store's file name
    state: str | None = None  # c2pa's validation state: Trusted, Valid or Invalid
    failures: list[str] = field(default_factory=list)  # failure codes of the active manifest
    error: str | None = None  # the manifest could not be read at all
    active: dict | None = None
    manifests: dict = field(default_factory=dict)
    validation_results: dict | None = None

    @property
    def trusted(self) -> bool:
        return self.state == "Trusted"

    @property
    def untrusted(self) -> bool:
        return any(code in TRUST_FAILURES for code in self.failures)

    @property
    def intact(self) -> bool:
        """Signature and hard binding hold (trust aside)."""
        return self.error is None and self.active is not None and not [c for c in self.failures if c not in TRUST_FAILURES]

    @property
    def label(self) -> str | None:
        return (self.active or {}).get("label")

    @property
    def title(self) -> str | None:
        return (self.active or {}).get("title")

    @property
    def signature_info(self) -> dict:
        return (self.active or {}).get("signature_info") or {}

    def problem(self) -> str:
        if self.error:
            return f"C2PA manifest unreadable ({self.error})"
        codes = list(dict.fromkeys(c for c in self.failures if c not in TRUST_FAILURES))
        return f"C2PA validation failed ({', '.join(codes) or self.state})"

    def assertion(self, label: str) -> Any:
        for item in (self.active or {}).get("assertions", []):
            if item.get("label") == label:
                return item.get("data")
        return None

    def signed_sidecar(self) -> dict | None:
        """The JSON sidecar's content as signed (`org.assetline.provenance`), or None without one."""
        data = self.assertion(PROVENANCE_LABEL)
        try:
            return json.loads(data["sidecar"]) if isinstance(data, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    def actions(self) -> list[dict]:
        for item in (self.active or {}).get("assertions", []):
            if item.get("label", "").startswith("c2pa.actions"):
                return item.get("data", {}).get("actions", [])
        return []

    def digital_source_types(self) -> list[str]:
        return [a["digitalSourceType"] for a in self.actions() if a.get("digitalSourceType")]

    def chain(self) -> list[str]:
        """Titles from this output back through each parentOf ingredient to the original input."""
        titles = [self.title or "?"]
        current, seen = self.active, set()
        while current:
            parent = next((i for i in current.get("ingredients", []) if i.get("relationship") == "parentOf"), None)
            if parent is None:
                break
            titles.append(parent.get("title", "?"))
            label = parent.get("active_manifest")
            if not label or label in seen:
                break
            seen.add(label)
            current = self.manifests.get(label)
        return titles

    def summary(self) -> dict:
        """The JSON sidecar's `signature` field: which manifest, where, signed by whom. No key material."""
        info = self.signature_info
        return {
            "format": "c2pa",
            "manifest": self.label,
            "store": self.store,
            "alg": info.get("alg"),
            "signer": info.get("common_name"),
            "issuer": info.get("issuer"),
            "cert_serial_number": info.get("cert_serial_number"),
            "time": info.get("time"),
        }


def read_credentials(output: Path, anchors: str | None) -> Credentials | None:
    """Read and validate `output`'s C2PA manifest (embedded, or `output.c2pa`); None when it has none."""
    import c2pa

    store = "embedded" if embeds(output) else c2pa_sidecar_for(output).name
    context = c2pa.Context.from_dict(c2pa_settings(anchors))
    try:
        if embeds(output):
            with c2pa.Reader(str(output), context=context) as reader:
                report = json.loads(reader.json())
        else:
            sidecar = c2pa_sidecar_for(output)
            if not sidecar.is_file():
                return None
            data = sidecar.read_bytes()
            with bound_bytes(output) as fh, c2pa.Reader("application/c2pa", fh, data, context=context) as reader:
                report = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError as exc:
        return Credentials(store=store, error=c2pa_complaint(exc))
    except OSError as exc:
        return Credentials(store=store, error=exc.strerror or str(exc))
    finally:
        context.close()
    manifests = report.get("manifests") or {}
    results = report.get("validation_results") or {}
    failures = [f.get("code", "?") for f in (results.get("activeManifest") or {}).get("failure", [])]
    active = manifests.get(report.get("active_manifest")) or {}
    empty_binding = any(a.get("label") == BINDING_LABEL and (a.get("data") or {}).get("empty_file")
                        for a in active.get("assertions", []))  # fmt: skip
    if not embeds(output) and empty_binding != (output.stat().st_size == 0) and "assertion.dataHash.mismatch" not in failures:
        failures.append("assertion.dataHash.mismatch")  # the stand-in binds an empty file, and only that
    return Credentials(
        store=store,
        state=report.get("validation_state"),
        failures=failures,
        active=manifests.get(report.get("active_manifest")),
        manifests=manifests,
        validation_results=results or None,
    )

