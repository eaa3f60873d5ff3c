"""Content Credentials (C2PA, through c2pa-python): every output signed, chained to its input, read back.

PNG, JPEG and MP4 outputs carry their manifest inside the file. Outputs that
cannot (SRT, VTT, JSON) get a sidecar manifest store `X.c2pa` whose hard
binding is C2PA's own data hash (`c2pa.hash.data`) over every byte of X, so
an edited subtitle file fails validation like an edited picture does. c2pa
can't hash nothing, so a zero-byte output (the SRT of silence) is bound to a
fixed stand-in text instead, and an `org.assetline.binding` assertion says
so: verify accepts that binding only for a file that is still empty.

Each manifest holds: the claim generator (assetline and its version), title
and format; the input as its `parentOf` ingredient (the input's own manifest
kept when it has one, so a chain survives across tools and repeated runs);
an intermediate text this output was made from (the transcript behind
subtitles, the subtitles inside a video) as a `componentOf` ingredient with
its manifest; a `c2pa.actions` assertion, `c2pa.opened` then one action per
step; a thumbnail for pictures and video; a `cawg.training-mining` assertion
from the recipe; and `org.assetline.provenance`, the JSON sidecar's content
(everything but the output's own hash and size, which change by signing),
which is what makes the sidecar tamper-evident: verify checks that the JSON
agrees with what was signed.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assetline import __version__
from assetline.keys import SigningError, SigningKey, signing_key, trust_anchors
from assetline.provenance.manifest import IPTC, SCHEMA, Manifest, StepRecord, media_type, signed_view
from assetline.errors import OutputError
from assetline.failures import describe_os_error
from assetline.storage import atomic_path, write_atomically

C2PA_SUFFIX = ".c2pa"
EMBEDDED_TYPES = ("image/png", "image/jpeg", "video/mp4")
PROVENANCE_LABEL = "org.assetline.provenance"
TRAINING_MINING_LABEL = "cawg.training-mining"
TRAINING_MINING_ENTRIES = ("cawg.ai_training", "cawg.ai_generative_training", "cawg.ai_inference", "cawg.data_mining")
TRUST_FAILURES = ("signingCredential.untrusted",)
BINDING_LABEL = "org.assetline.binding"
# What a zero-byte output's data hash covers instead of its (no) bytes.
EMPTY_STAND_IN = b"assetline: this C2PA manifest binds an empty (zero-byte) file\n"
THUMBNAIL_EDGE = 512
_PARENT, _COMPONENT = "parent", "component"

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
}


def c2pa_sidecar_for(output: Path) -> Path:
    return output.with_name(output.name + C2PA_SUFFIX)


def embeds(path: Path) -> bool:
    """Whether the manifest goes inside the file (PNG, JPEG, MP4) rather than into `X.c2pa`."""
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


# --------------------------------------------------------------------------- signing


def content_signer(training_mining: str = "notAllowed", create: bool = True) -> tuple[ContentSigner, Path | None]:
    """The signer for the configured key (made now, as a development CA, when there is none and
    `create`), and the keys folder when it was just made."""
    key, made = signing_key(create)
    if made:
        logging.getLogger("assetline").warning("no signing key configured: made a development CA and signing key in %s", made)
    anchors, _ = trust_anchors()
    return ContentSigner(key, anchors, training_mining), made


class ContentSigner:
    """Signs outputs with Content Credentials; the `provenance.writer.Signer` assetline uses.

    `sign(output, manifest)` embeds a manifest into `output` (rewriting it
    atomically in its folder) or writes `output.c2pa` beside it, and returns
    the summary that goes into the JSON sidecar's `signature` field.
    """

    def __init__(self, key: SigningKey, anchors: str | None = None, training_mining: str = "notAllowed") -> None:
        self.key = key
        self.anchors = anchors
        self.training_mining = training_mining

    def __repr__(self) -> str:
        return f"ContentSigner({self.key!r}, training_mining={self.training_mining!r})"

    def sign(self, output: Path, manifest: Manifest) -> dict:
        import c2pa

        context = c2pa.Context.from_dict(c2pa_settings(self.anchors))
        builder = signer = None
        try:
            builder, resources = self._builder(c2pa, context, output, manifest)
            signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(_alg(c2pa, self.key.alg), self.key.chain_pem, self.key.key_pem, self.key.tsa_url)
            )
            for identifier, data in resources:
                builder.add_resource(identifier, io.BytesIO(data))
            if embeds(output):
                _sign_embedded(builder, signer, output)
            else:
                write_atomically(c2pa_sidecar_for(output), _sign_detached(c2pa, builder, signer, output))
        except c2pa.C2paError as exc:
            full = _out_of_space(exc, output)
            if full is not None:
                raise OutputError(output, describe_os_error(full)) from None
            raise SigningError(output, f"C2PA signing failed: {_first_line(exc)}") from None
        except OSError as exc:  # writing the signed copy (or closing it) on a full device
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(output, describe_os_error(exc)) from None
            raise
        finally:
            for handle in (builder, signer, context):
                if handle is not None:
                    handle.close()
        credentials = read_credentials(output, self.anchors)
        if credentials is None or not credentials.intact:
            why = credentials.problem() if credentials else "no manifest found after signing"
            raise SigningError(output, f"C2PA manifest does not validate after signing: {why}")
        return credentials.summary()

    def _builder(self, c2pa, context, output: Path, manifest: Manifest):
        """The manifest definition and a Builder with its ingredients; resources still to add."""
        stage = output.parent
        parent_ref = _parent_of(manifest, stage)
        components = [r for r in manifest.inputs if r.role == "intermediate" and r is not parent_ref]
        ingredients: list[dict] = []
        resources: list[tuple[str, bytes]] = []
        component_ids = []
        for i, ref in enumerate(components):
            label = f"{_COMPONENT}-{i}"
            ingredients.append(_component(c2pa, stage / ref.path, label, self.anchors, resources))
            component_ids.append(label)
        own_steps = _steps_after(manifest.steps, parent_ref.path if parent_ref.role == "intermediate" else None)
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [_PARENT]},
                    "description": f"opened {Path(parent_ref.path).name}"}]  # fmt: skip
        for n, step in enumerate(own_steps):
            last = n == len(own_steps) - 1
            actions.append(_action(step, component_ids if last else []))
        definition: dict[str, Any] = {
            "claim_generator_info": [{"name": "assetline", "version": __version__}],
            "title": output.name,
            "format": media_type(output),
            "ingredients": ingredients,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": actions}},
                {"label": TRAINING_MINING_LABEL,
                 "data": {"entries": {e: {"use": self.training_mining} for e in TRAINING_MINING_ENTRIES}}},
                # As JSON text: c2pa's JSON-to-CBOR conversion turns arrays of numbers into byte strings.
                {"label": PROVENANCE_LABEL, "data": {"schema": SCHEMA, "sidecar": json.dumps(signed_view(manifest))}},
            ],
        }  # fmt: skip
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


# What signing may need on the output's device beyond the output's own size (its signed copy is
# written beside it): the manifest, a thumbnail, ingredients' manifests. With less free when c2pa
# fails, the device is what failed, whatever c2pa says (with under ~1 MB it says only "Io: Other:
# UntrackedPointer").
SIGNING_HEADROOM = 1 << 20
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _out_of_space(exc: BaseException, output: Path) -> OSError | None:
    """The full-device OSError a c2pa failure while signing `output` stands for, or None when it is not one.

    c2pa reports a write that ran out of room as "Io: No space left on device (os
    error 28)" or, with very little room, as an opaque "Io: Other: UntrackedPointer":
    so a failure is the device's when c2pa names ENOSPC/EDQUOT, or when the output's
    folder has less free than the output's size plus SIGNING_HEADROOM.
    """
    code = _OS_ERROR.search(str(exc))
    if code and int(code.group(1)) in (errno.ENOSPC, errno.EDQUOT):
        number = int(code.group(1))
        return OSError(number, os.strerror(number), str(output))
    try:
        st = os.statvfs(output.parent)
        size = output.stat().st_size
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < size + SIGNING_HEADROOM:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output))
    return None


def _alg(c2pa, name: str):
    return {"es256": c2pa.C2paSigningAlg.ES256, "ed25519": c2pa.C2paSigningAlg.ED25519}[name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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


def _component(c2pa, path: Path, label: str, anchors: str | None, resources: list) -> dict:
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


def _sign_embedded(builder, signer, output: Path) -> None:
    """Sign into a new file beside `output`, then rename it over: readers see old or new, never half."""
    with atomic_path(output, mode=output.stat().st_mode & 0o777) as tmp:
        with open(output, "rb") as source, open(tmp, "w+b") as dest:
            builder.sign(signer, media_type(output), source, dest)


_ffi_lock = threading.Lock()
_ffi_ready = False


def _ffi():
    """c2pa's native library, with the two data-hash calls the Python wrapper does not expose (0.38)."""
    global _ffi_ready
    from c2pa import c2pa as native

    lib = native._lib
    with _ffi_lock:
        if not _ffi_ready:
            out = ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))
            lib.c2pa_builder_data_hashed_placeholder.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, out]
            lib.c2pa_builder_data_hashed_placeholder.restype = ctypes.c_int64
            lib.c2pa_builder_sign_data_hashed_embeddable.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, out,
            ]  # fmt: skip
            lib.c2pa_builder_sign_data_hashed_embeddable.restype = ctypes.c_int64
            _ffi_ready = True
    return native, lib


def _bound_bytes(output: Path):
    """What a detached manifest's data hash covers: the file's bytes, or the stand-in for an empty file."""
    if output.stat().st_size == 0:
        return io.BytesIO(EMPTY_STAND_IN)
    return open(output, "rb")


def _sign_detached(c2pa, builder, signer, output: Path) -> bytes:
    """A manifest store for `output`, bound to all of its bytes by a C2PA data hash (no exclusions).

    c2pa can't embed into text, so it signs a data-hashed manifest for the
    `application/c2pa` format: a placeholder declares the data hash, then the
    signing call hashes the file's stream into it.
    """
    native, lib = _ffi()
    fmt = b"application/c2pa"
    reserve = signer.reserve_size()
    with builder._exclusive_native_call(), signer._native_call():
        placeholder = ctypes.POINTER(ctypes.c_ubyte)()
        size = lib.c2pa_builder_data_hashed_placeholder(builder._handle, reserve, fmt, ctypes.byref(placeholder))
        native._check_ffi_operation_result(size, "C2PA data-hash placeholder failed", check=lambda r: r < 0)
        lib.c2pa_free(placeholder)
        data_hash = json.dumps({"exclusions": [], "name": "jumbf manifest", "alg": "sha256", "hash": [], "pad": []})
        manifest = ctypes.POINTER(ctypes.c_ubyte)()
        with _bound_bytes(output) as fh, c2pa.Stream(fh) as stream:
            size = lib.c2pa_builder_sign_data_hashed_embeddable(
                builder._handle, signer._handle, data_hash.encode(), fmt, stream._stream, ctypes.byref(manifest)
            )
        native._check_ffi_operation_result(size, "C2PA signing failed", check=lambda r: r < 0)
        try:
            return ctypes.string_at(manifest, size)
        finally:
            lib.c2pa_free(manifest)


# --------------------------------------------------------------------------- reading


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
            with _bound_bytes(output) as fh, c2pa.Reader("application/c2pa", fh, data, context=context) as reader:
                report = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError as exc:
        return Credentials(store=store, error=_first_line(exc))
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
