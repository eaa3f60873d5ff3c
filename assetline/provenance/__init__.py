"""Provenance: manifest schema, writing (atomically, after the output), signing hook, verifying."""

from assetline.provenance.manifest import (
    IPTC,
    SCHEMA,
    SIDECAR_SUFFIX,
    AIDisclosure,
    InputRef,
    Manifest,
    ModelRef,
    RunRef,
    StepRecord,
    ToolRef,
    sidecar_for,
    utc_now,
)
from assetline.provenance.verify import Verdict, verify_output, verify_paths
from assetline.provenance.writer import Signer, build_manifest, current_run, read_manifest, write_manifest

__all__ = [
    "IPTC", "SCHEMA", "SIDECAR_SUFFIX", "AIDisclosure", "InputRef", "Manifest", "ModelRef",
    "RunRef", "StepRecord", "ToolRef", "Signer", "Verdict", "build_manifest", "current_run",
    "read_manifest", "sidecar_for", "utc_now", "verify_output", "verify_paths", "write_manifest",
]  # fmt: skip
