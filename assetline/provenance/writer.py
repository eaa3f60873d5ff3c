"""Building and writing sidecars: each written atomically, after the output it describes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from assetline import __version__
from assetline.provenance.manifest import (
    Generator,
    InputRef,
    Manifest,
    OutputRef,
    PreviousRef,
    RunRef,
    StepRecord,
    disclose,
    media_type,
    sidecar_for,
)
from assetline.storage import sha256_file, write_atomically


class Signer(Protocol):
    """Signs an output and its manifest; returns the block for the sidecar's `signature` field.

    The one implementation, `provenance.signing.ContentSigner`, embeds a
    C2PA manifest into the output (rewriting it atomically, so its sha256
    changes) or writes `output.c2pa` beside it; `write_manifest` then records
    the output's final hash and size.
    """

    def sign(self, output: Path, manifest: Manifest) -> dict: ...


def current_run() -> RunRef:
    """The Prefect flow run this code runs in, or an empty record outside one."""
    try:
        from prefect.runtime import deployment, flow_run

        run_id = flow_run.get_id()
        if not run_id:
            return RunRef()
        return RunRef(
            flow_run_id=str(run_id),
            flow_run_name=flow_run.get_name(),
            flow_name=flow_run.get_flow_name(),
            deployment=deployment.get_name(),
        )
    except Exception:
        return RunRef()


def output_ref(output: Path) -> OutputRef:
    return OutputRef(path=output.name, sha256=sha256_file(output), bytes=output.stat().st_size, media_type=media_type(output))


def build_manifest(
    output: Path,
    inputs: list[InputRef],
    steps: list[StepRecord],
    recipe_sha256: str,
    run: RunRef,
    version: int = 1,
    previous: PreviousRef | None = None,
) -> Manifest:
    return Manifest(
        version=version,
        previous=previous,
        output=output_ref(output),
        inputs=inputs,
        steps=steps,
        run=run,
        generator=Generator(version=__version__),
        recipe_sha256=recipe_sha256,
        ai_disclosure=disclose(steps),
    )


def write_manifest(output: Path, manifest: Manifest, signer: Signer | None = None) -> Path:
    """Write `output`'s sidecar next to it (signed when a signer is given); returns its path.

    With a signer, the output is signed first and the sidecar records its final bytes.
    """
    if signer is not None:
        signature = signer.sign(output, manifest)
        manifest = manifest.model_copy(update={"output": output_ref(output), "signature": signature})
    sidecar = sidecar_for(output)
    write_atomically(sidecar, manifest.to_json())
    return sidecar


def read_manifest(sidecar: Path) -> Manifest:
    return Manifest.model_validate_json(sidecar.read_bytes())
