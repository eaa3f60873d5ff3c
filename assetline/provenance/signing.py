"""Signing outputs with Content Credentials: the C2PA manifest embedded (PNG, JPEG, MP4, MOV) or detached (`X.c2pa`).

`ContentSigner` is the `provenance.writer.Signer` assetline uses; what the
manifest says is `provenance.claim`, where it lives and how it reads back is
`provenance.credentials`. A device that fills up while signing is the output's
failure (`failures`' line), not the signature's.
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
from pathlib import Path

from assetline.errors import OutputError
from assetline.failures import Blame, blame, describe_os_error
from assetline.keys import SigningError, SigningKey, signing_key, trust_anchors
from assetline.provenance.claim import manifest_builder
from assetline.provenance.credentials import (
    bound_bytes,
    c2pa_complaint,
    c2pa_settings,
    c2pa_sidecar_for,
    embeds,
    read_credentials,
)
from assetline.provenance.manifest import Manifest, media_type
from assetline.storage import atomic_path, write_atomically


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
            builder, resources = manifest_builder(c2pa, context, output, manifest, self.anchors, self.training_mining)
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
            failed = _device_failure(exc, output)
            if failed is not None:
                raise OutputError(output, describe_os_error(failed)) from None
            raise SigningError(output, f"C2PA signing failed: {c2pa_complaint(exc)}") from None
        except OSError as exc:  # writing the signed copy (or closing it) on a full or read-only device
            if blame(exc) is not Blame.OUTPUT:
                raise
            raise OutputError(output, describe_os_error(exc)) from None
        finally:
            for handle in (builder, signer, context):
                if handle is not None:
                    handle.close()
        credentials = read_credentials(output, self.anchors)
        if credentials is None or not credentials.intact:
            why = credentials.problem() if credentials else "no manifest found after signing"
            raise SigningError(output, f"C2PA manifest does not validate after signing: {why}")
        return credentials.summary()


# What signing may need on the output's device beyond the output's own size (its signed copy is
# written beside it): the manifest, a thumbnail, ingredients' manifests. With less free when c2pa
# fails, the device is what failed, whatever c2pa says (with under ~1 MB it says only "Io: Other:
# UntrackedPointer").
SIGNING_HEADROOM = 1 << 20
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _device_failure(exc: BaseException, output: Path) -> OSError | None:
    """The output device's OSError a c2pa failure while signing `output` stands for, or None when it is not one.

    c2pa reports a write that ran out of room as "Io: No space left on device (os
    error 28)" or, with very little room, as an opaque "Io: Other: UntrackedPointer":
    so a failure is the device's when the errno c2pa names is one `failures.blame`
    puts on the output (a full disk, say), or when the output's folder has less
    free than the output's size plus SIGNING_HEADROOM.
    """
    code = _OS_ERROR.search(str(exc))
    if code:
        number = int(code.group(1))
        named = OSError(number, os.strerror(number), str(output))
        if blame(named) is Blame.OUTPUT:
            return named
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
        with bound_bytes(output) as fh, c2pa.Stream(fh) as stream:
            size = lib.c2pa_builder_sign_data_hashed_embeddable(
                builder._handle, signer._handle, data_hash.encode(), fmt, stream._stream, ctypes.byref(manifest)
            )
        native._check_ffi_operation_result(size, "C2PA signing failed", check=lambda r: r < 0)
        try:
            return ctypes.string_at(manifest, size)
        finally:
            lib.c2pa_free(manifest)

