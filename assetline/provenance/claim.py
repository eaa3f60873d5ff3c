"""What an output's C2PA manifest says: its actions, ingredients and assertions, and a thumbnail for video.

Each manifest holds: the claim generator (assetline and its version), title
and format; the input as its `parentOf` ingredient (the input's own manifest
kept when it has one, so a chain survives across tools and repeated runs);
an intermediate text this output was made from (the transcript behind
subtitles, the subtitles inside a video) as a `componentOf` ingredient with
its manifest; the version it replaced, when there is one, as a `componentOf`
ingredient named by its sha256 (`previous-version`); a `c2pa.actions` assertion, `c2pa.opened` then one action per
step, each with its IPTC digital source type (the AI disclosure); a thumbnail
for pictures and video; a `cawg.training-mining` assertion from the recipe;
and `org.assetline.provenance`, the JSON sidecar's content (everything but
the output's own hash and size, which change by signing), which is what makes
the sidecar tamper-evident: verify checks that the JSON agrees with what was signed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from assetline import __version__
from assetline.provenance.credentials import (
    BINDING_LABEL,
    EMPTY_STAND_IN,
    PROVENANCE_LABEL,
    THUMBNAIL_EDGE,
    c2pa_sidecar_for,
    embeds,
    read_credentials,
)
from assetline.provenance.manifest import IPTC, SCHEMA, Manifest, StepRecord, media_type, signed_view

TRAINING_MINING_LABEL = "cawg.training-mining"
REVIEW_LABEL = "org.assetline.review"  # who approved the output before delivery, when, and why it was held
REVIEW_ACTION = "org.assetline.approved"
TRAINING_MINING_ENTRIES = ("cawg.ai_training", "cawg.ai_generative_training", "cawg.ai_inference", "cawg.data_mining")
_PARENT, _COMPONENT = "parent", "component"
PREVIOUS_VERSION = "previous-version"  # the ingredient naming the version an output replaced

# Step name -> (C2PA action, what it did). Steps whose action depends on what they did are in `_action_name`.
ACTIONS: dict[str, tuple[str, str]] = {
    "remove_background": ("c2pa.edited", "background removed (subject cut out)"),
    "upscale": ("c2pa.resized", "upscaled"),
    "denoise": ("c2pa.filtered", "denoised"),
    "transcode": ("c2pa.transcoded", "encoded as H.264 in MP4"),
    "normalize_loudness": ("c2pa.edited", "loudness normalised to EBU R128"),
    # c2pa.created can't follow c2pa.opened in one actions assertion (c2pa-rs rejects a
    # second 'created or opened'), and every manifest here opens its input: text a model
    # wrote from the sound is recorded as a conversion, with its trainedAlgorithmicMedia type.
    "transcribe": ("c2pa.converted", "speech transcribed to text by a speech model"),
    "subtitles": ("c2pa.converted", "subtitle cues written from the transcript"),
    "package": ("c2pa.repackaged", "streams muxed into MP4"),
    "burn_in": ("c2pa.transcoded", "picture re-encoded"),
    # The matte is new content a segmentation model made from the picture, frame by frame.
    "matte": ("c2pa.converted", "subject matte made by a segmentation model, frame by frame"),
}


def manifest_builder(
    c2pa: ModuleType, context: Any, output: Path, manifest: Manifest, anchors: str | None, training_mining: str
) -> tuple[Any, list[tuple[str, bytes]]]:
    """A c2pa Builder for `output`'s manifest, its ingredients added, and the resources still to add to it.

    `anchors` are the trust anchors an intermediate's own manifest is read under;
    `training_mining` is what the `cawg.training-mining` assertion allows.
    """
    stage = output.parent
    parent_ref = _parent_of(manifest, stage)
    components = [r for r in manifest.inputs if r.role == "intermediate" and r is not parent_ref]
    ingredients: list[dict] = []
    resources: list[tuple[str, bytes]] = []
    component_ids = []
    for i, ref in enumerate(components):
        label = f"{_COMPONENT}-{i}"
        ingredients.append(_component(stage / ref.path, label, anchors, resources))
        component_ids.append(label)
    if manifest.previous is not None:  # the version this output replaces: named by its hash, its file kept beside
        ingredients.append({"title": manifest.previous.path, "format": media_type(output), "relationship": "componentOf",
                            "label": PREVIOUS_VERSION, "instance_id": f"sha256:{manifest.previous.sha256}"})  # fmt: skip
    own_steps = _steps_after(manifest.steps, parent_ref.path if parent_ref.role == "intermediate" else None)
    actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [_PARENT]},
                "description": f"opened {Path(parent_ref.path).name}"}]  # fmt: skip
    for n, step in enumerate(own_steps):
        last = n == len(own_steps) - 1
        actions.append(_action(step, component_ids if last else []))
    if manifest.review is not None:
        actions.append(_review_action(manifest))
    definition: dict[str, Any] = {
        "claim_generator_info": [{"name": "assetline", "version": __version__}],
        "title": output.name,
        "format": media_type(output),
        "ingredients": ingredients,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {"label": TRAINING_MINING_LABEL,
             "data": {"entries": {e: {"use": training_mining} for e in TRAINING_MINING_ENTRIES}}},
            # As JSON text: c2pa's JSON-to-CBOR conversion turns arrays of numbers into byte strings.
            {"label": PROVENANCE_LABEL, "data": {"schema": SCHEMA, "sidecar": json.dumps(signed_view(manifest))}},
        ],
    }  # fmt: skip
    if manifest.review is not None:
        definition["assertions"].append({"label": REVIEW_LABEL, "data": review_assertion(manifest)})
    if not embeds(output) and output.stat().st_size == 0:
        definition["assertions"].append({"label": BINDING_LABEL, "data": {
            "empty_file": True, "stand_in": EMPTY_STAND_IN.decode()}})  # fmt: skip
    if media_type(output).startswith("video/"):
        thumb = video_thumbnail(output)
        if thumb:
            definition["thumbnail"] = {"format": "image/jpeg", "identifier": "thumbnail.jpg"}
            resources.append(("thumbnail.jpg", thumb))
    parent_path = Path(parent_ref.path) if Path(parent_ref.path).is_absolute() else stage / parent_ref.path
    parent = {"title": parent_path.name, "relationship": "parentOf", "label": _PARENT}
    builder = c2pa.Builder(definition, context=context)
    try:
        with open(parent_path, "rb") as fh:
            builder.add_ingredient(parent, media_type(parent_path), fh)
    except (OSError, c2pa.C2paError):
        # Unreadable here or a format c2pa can't open: name the input, without its data.
        builder.close()
        definition["ingredients"].append(parent | {"format": media_type(parent_path),
                                                   "instance_id": f"sha256:{parent_ref.sha256}"})  # fmt: skip
        builder = c2pa.Builder(definition, context=context)
    return builder, resources


def _parent_of(manifest: Manifest, stage: Path):
    """The input this output was made from: the last intermediate picture or video (signed
    already, so its manifest chains), else the source."""
    for ref in reversed(manifest.inputs):
        if ref.role == "intermediate" and embeds(stage / ref.path) and (stage / ref.path).is_file():
            return ref
    return next(r for r in manifest.inputs if r.role == "source")


def _steps_after(steps: list[StepRecord], parent_name: str | None) -> list[StepRecord]:
    """The steps this output's own manifest records: those after the one that made its parent."""
    if parent_name is None:
        return list(steps)
    made_parent = [i for i, s in enumerate(steps) if s.output == parent_name]
    return steps[made_parent[-1] + 1 :] if made_parent else list(steps)


def _action_name(step: StepRecord) -> tuple[str, str]:
    name, what = ACTIONS.get(step.name, ("c2pa.edited", step.name.replace("_", " ")))
    if step.name == "package" and step.parameters.get("subtitles"):
        name, what = "c2pa.placed", "streams muxed into MP4 with a subtitle track placed"
    if step.name == "burn_in" and step.digital_source_type != "digitalCapture":
        name, what = "c2pa.placed", "subtitles drawn into the picture, re-encoded"
    return name, what


def _action(step: StepRecord, ingredient_ids: list[str]) -> dict:
    name, what = _action_name(step)
    parameters: dict[str, Any] = {"step": step.name, "settings": _c2pa_safe(step.parameters)}
    if step.model is not None:
        parameters["model"] = {"name": step.model.name, "sha256": step.model.sha256}
    if step.tool.runtime:
        parameters["runtime"] = step.tool.runtime
    if ingredient_ids:
        parameters["ingredientIds"] = ingredient_ids
    return {
        "action": name,
        "when": step.ended_at,
        "softwareAgent": {"name": step.tool.name, "version": step.tool.version},
        "digitalSourceType": IPTC + step.digital_source_type,
        "description": what,
        "parameters": parameters,
    }


def review_assertion(manifest: Manifest) -> dict:
    """The `org.assetline.review` assertion: the sidecar's `review`, reasons as their lines (cue numbers as text)."""
    review = manifest.review
    return {"decision": review.decision, "by": review.by, "at": review.at, "comment": review.comment,
            "reasons": [{"flag": r.flag, "detail": r.detail} for r in review.reasons]}  # fmt: skip


def _review_action(manifest: Manifest) -> dict:
    review = manifest.review
    verb = "approved" if review.decision == "approve" else "rejected"
    return {
        "action": REVIEW_ACTION,
        "when": review.at,
        "softwareAgent": {"name": "assetline", "version": __version__},
        "description": f"{verb} for delivery by {review.by}" + (f": {review.comment}" if review.comment else ""),
        "parameters": {"reviewer": review.by, "decision": review.decision, "reasons": [r.detail for r in review.reasons]},
    }


def _c2pa_safe(value: Any) -> Any:
    """`value` with each array of numbers written as JSON text ("[192, 128]").

    c2pa (0.38) stores an array holding only numbers as a byte string: [192, 128]
    reads back as base64, [1.5, 2.5] as nothing. Text survives as written.
    """
    if isinstance(value, dict):
        return {k: _c2pa_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return json.dumps(list(value))
        return [_c2pa_safe(v) for v in value]
    return value


def _component(path: Path, label: str, anchors: str | None, resources: list) -> dict:
    """A text intermediate as a componentOf ingredient, carrying its own (sidecar) manifest."""
    ingredient: dict[str, Any] = {"title": path.name, "format": media_type(path), "relationship": "componentOf",
                                  "label": label}  # fmt: skip
    store = c2pa_sidecar_for(path)
    credentials = read_credentials(path, anchors) if store.is_file() else None
    if credentials is not None and credentials.active is not None:
        identifier = f"{label}.c2pa"
        resources.append((identifier, store.read_bytes()))
        ingredient.update(
            manifest_data={"format": "application/c2pa", "identifier": identifier},
            active_manifest=credentials.label,
            validation_results=credentials.validation_results,
        )
    return ingredient


def video_thumbnail(path: Path) -> bytes | None:
    """A JPEG of the first frame, long edge THUMBNAIL_EDGE, or None when no frame decodes."""
    import av
    from PIL import Image

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            frame = next(container.decode(video=0), None)
            if frame is None:
                return None
            image = frame.to_image()
    except (av.FFmpegError, OSError):
        return None
    image.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()

