"""The provenance manifest (`assetline/provenance@1`): what an output is, what it came from, how.

One `X.provenance.json` sits next to every output X. Steps are recorded by the
tasks as they run (`StepRecord`); the flow assembles them into a `Manifest`.
"""

from __future__ import annotations

import json
import mimetypes
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "assetline/provenance@1"
SIDECAR_SUFFIX = ".provenance.json"

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source types, from least to most AI involvement; a manifest
# discloses the strongest one any of its steps used.
DIGITAL_SOURCE_TYPES = (
    "digitalCapture",
    "algorithmicallyEnhanced",
    "compositeWithTrainedAlgorithmicMedia",
    "trainedAlgorithmicMedia",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolRef(_Record):
    name: str
    version: str
    runtime: str | None = None  # e.g. "onnxruntime 1.32.0", "ncnn 1.0.20261020 (cpu)"


class ModelRef(_Record):
    name: str
    sha256: str
    files: dict[str, str] = Field(default_factory=dict)  # file name -> sha256


class StepRecord(_Record):
    """One step as it ran: returned by every task, consumed by provenance."""

    name: str
    tool: ToolRef
    model: ModelRef | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    started_at: str
    ended_at: str
    digital_source_type: str  # IPTC term for what this step did to the pixels/samples
    output: str  # file name of what the step produced

    @classmethod
    def finished(
        cls, name: str, tool: ToolRef, started_at: str, kind: str, output: str,
        parameters: dict[str, Any] | None = None, model: ModelRef | None = None,
    ) -> StepRecord:  # fmt: skip
        """The record of a step that has just ended: `kind` is its IPTC digital source type."""
        return cls(name=name, tool=tool, model=model, parameters=parameters or {}, started_at=started_at,
                   ended_at=utc_now(), digital_source_type=kind, output=output)  # fmt: skip


class OutputRef(_Record):
    path: str  # file name, relative to the sidecar's folder
    sha256: str
    bytes: int
    media_type: str


class InputRef(_Record):
    path: str  # absolute for the source; a file name for an intermediate in the same folder
    sha256: str
    role: Literal["source", "intermediate"]
    bytes: int | None = None


class RunRef(_Record):
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    flow_name: str | None = None
    deployment: str | None = None


class Generator(_Record):
    name: str = "assetline"
    version: str


class AIDisclosure(_Record):
    digital_source_type: str  # full IPTC URI
    ai_generated_content: bool
    models: list[str] = Field(default_factory=list)
    statement: str


class ReviewReason(_Record):
    """Why an asset was held for a person: the flag that fired and what it saw."""

    flag: str  # forbidden | language_uncertain | low_confidence | subtitle_exceptions | soft_matte | required
    detail: str  # one line, as the reviewer reads it
    output: str | None = None  # the output it concerns, when one
    cues: list[int] = Field(default_factory=list)  # subtitle cue numbers (1-based, as in the SRT)


class ReviewRecord(_Record):
    """A person's decision on an asset held for review; in every delivered output's manifest."""

    decision: Literal["approve", "reject"]
    by: str
    at: str
    comment: str = ""
    reasons: list[ReviewReason] = Field(default_factory=list)


class PreviousRef(_Record):
    """The same output in the version this one replaced (`versions.py`): where it is kept and its bytes' hash."""

    version: int
    path: str  # relative to the asset folder: .versions/v002/subtitles.srt
    sha256: str


class Manifest(_Record):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["assetline/provenance@1"] = Field(SCHEMA, alias="schema")
    output: OutputRef
    inputs: list[InputRef]
    steps: list[StepRecord]
    run: RunRef
    generator: Generator
    recipe_sha256: str
    ai_disclosure: AIDisclosure
    created_at: str = Field(default_factory=utc_now)
    # Who approved the output, when it was held for review (absent when it was delivered unreviewed).
    review: ReviewRecord | None = None
    # This output's version of the asset (1 for the first delivery), and the one it replaced.
    version: int = Field(1, ge=1)
    previous: PreviousRef | None = None
    # Reserved for signing (C2PA): absent in unsigned v1 manifests.
    signature: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        # Fields a sidecar written before they existed lacks are left out when empty, so it reads back the same.
        skip = {"review"} if self.review is None else set()
        if self.previous is None:
            skip.add("previous")
            if "version" not in self.model_fields_set:
                skip.add("version")
        return (self.model_dump_json(by_alias=True, exclude_none=False, indent=2, exclude=skip or None) + "\n").encode()


# What changes when an output is signed (its bytes, when the manifest goes inside it) and the
# signature itself: left out of the part of the sidecar that the C2PA manifest carries.
UNSIGNED_FIELDS = (("output", "sha256"), ("output", "bytes"), ("signature",))


def signed_view(manifest: Manifest) -> dict:
    """The sidecar's content as its C2PA manifest carries it (`org.assetline.provenance`).

    Taken from the JSON text exactly as written, so the writer and a verifier
    reading the file back compute the same thing.
    """
    view = json.loads(manifest.to_json())
    for path in UNSIGNED_FIELDS:
        node = view
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return view


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The dotted path of the first place two JSON values differ, or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{where}.{key}".lstrip(".")
            found = first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return where.lstrip(".") or "document"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}.{i}")
            if found:
                return found
        return None
    here = where.lstrip(".") or "document"
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python, not in JSON
        return None if a is b else here
    return None if a == b else here  # 7 == 7.0: CBOR may keep an integral float either way


def media_type(path: Path) -> str:
    known = {".png": "image/png", ".json": "application/json", ".srt": "application/x-subrip",
             ".vtt": "text/vtt", ".mp4": "video/mp4", ".mov": "video/quicktime", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}  # fmt: skip
    return known.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def sidecar_for(output: Path) -> Path:
    return output.with_name(output.name + SIDECAR_SUFFIX)


AI_SOURCE_TYPES = ("compositeWithTrainedAlgorithmicMedia", "trainedAlgorithmicMedia")


def disclose(steps: list[StepRecord]) -> AIDisclosure:
    """The strongest digital source type among the steps, and which models made it so."""
    strongest = max((s.digital_source_type for s in steps), key=DIGITAL_SOURCE_TYPES.index, default="digitalCapture")
    ai_steps = [s for s in steps if s.digital_source_type in AI_SOURCE_TYPES]
    ai_models = list(dict.fromkeys(s.model.name for s in ai_steps if s.model))
    what = "; ".join(s.name.replace("_", " ") for s in ai_steps)
    by = f"trained AI models ({', '.join(ai_models)})" if ai_models else "trained AI models"
    if strongest == "trainedAlgorithmicMedia":
        statement = f"Generated from the source by {by}: {what}."
    elif strongest == "compositeWithTrainedAlgorithmicMedia":
        statement = f"Captured media altered by, or combined with output of, {by}: {what}."
    elif strongest == "algorithmicallyEnhanced":
        statement = "Captured media enhanced by conventional (non-AI) algorithms."
    else:
        statement = "No AI or algorithmic alteration."
    return AIDisclosure(
        digital_source_type=IPTC + strongest,
        ai_generated_content=strongest in AI_SOURCE_TYPES,
        models=ai_models,
        statement=statement,
    )
