"""What an input is: its content hash, its kind, and where its outputs go.

Inputs are discovered from files and folders (recursively, hidden files and
symlinks out of a folder skipped), identified by content, and matched against
existing outputs so unchanged work is never redone.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from assetline.errors import AssetlineError, BadInputError
from assetline.media import Kind, MediaInfo, probe, probe_kind
from assetline.provenance import SIDECAR_SUFFIX, verify_output
from assetline.storage import STAGING_DIR


@dataclass(frozen=True)
class Asset:
    """One input: `path` as it was named (outputs, tables, manifests), `reads` where its bytes are read from.

    Inside `opened()`, `reads` is the open descriptor (`/proc/<pid>/fd/N`), so every
    step, ffmpeg included, decodes the very file that was confined and hashed,
    whatever is renamed or swapped at `path` meanwhile.
    """

    path: Path
    sha256: str
    kind: Kind
    bytes: int
    reads: Path | None = None
    info: MediaInfo | None = None  # streams and duration of audio and video, probed once when opened
    fingerprint: str = ""  # device, inode, size and mtime when hashed: the same file, unchanged, is not hashed again

    def __post_init__(self) -> None:
        if self.reads is None:
            object.__setattr__(self, "reads", self.path)

    @property
    def label(self) -> str:
        """How runs and tables name the asset: `chelsea.jpg · 3f2a1b9c`."""
        return f"{self.path.name} · {self.sha256[:8]}"

    @property
    def folder_name(self) -> str:
        return output_folder_name(self.path, self.sha256)


# A folder name is at most 255 bytes on common file systems; the staging folder adds 13.
_STEM_MAX_CHARS, _STEM_MAX_BYTES = 120, 200


def output_folder_name(path: Path, sha256: str) -> str:
    """`<input-stem>-<first 8 hex of sha256>`, the stem made safe as one folder name.

    Separators and control characters become `_`, leading dots go (never `..` or a
    hidden folder), and the stem is cut to 120 characters and 200 bytes of UTF-8
    (a long name in a non-Latin script would otherwise exceed the file system's limit).
    """
    stem = unicodedata.normalize("NFC", path.stem)
    stem = re.sub(r"[\x00-\x1f\x7f/\\]", "_", stem).lstrip(".").strip() or "asset"
    stem = stem[:_STEM_MAX_CHARS].encode("utf-8")[:_STEM_MAX_BYTES].decode("utf-8", "ignore").strip() or "asset"
    return f"{stem}-{sha256[:8]}"


_CHUNK = 1 << 20


def identify(path: Path, root: Path | None = None) -> Asset:
    """Hash and probe one file, opened once and confined to `root`. Raises `BadInputError` naming the file and the cause.

    The returned asset reads from `path` again later; to read the confined
    descriptor throughout, use `opened()`.
    """
    with opened(path, root) as asset:
        return replace(asset, reads=asset.path)


def fingerprint_of(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


@contextmanager
def opened(path: Path, root: Path | None = None, known: tuple[str, str] | None = None) -> Iterator[Asset]:
    """The file at `path`, opened once, confined by its descriptor, hashed and probed from it; open until the block ends.

    Confinement is checked on what was opened, not on the name: the kernel's own
    path of the descriptor must lie inside `root` (when given), so a symlink
    swapped in after discovery is refused, never followed. The path is made
    absolute first: ffmpeg and PyAV read a bare name such as `concat:a.wav|b.wav`
    or `pipe:0` as a protocol, not as the file of that name.

    `known` is (sha256, fingerprint) from identifying the file earlier in this
    run (`assetline run`'s plan, the batch): when the opened file still has that
    fingerprint (same device and inode, size and modification time), its
    sha256 is taken as known rather than computed again.
    """
    path = path.absolute()
    fd = _open_confined(path, root)
    try:
        reads = Path(f"/proc/{os.getpid()}/fd/{fd}")
        st = os.fstat(fd)
        size, fingerprint = st.st_size, fingerprint_of(st)
        if known is not None and known[1] == fingerprint:
            digest = known[0]
        else:
            digest = _sha256_fd(path, fd) if size else ""
        try:
            kind = probe_kind(reads)  # raises for empty and unrecognised files
            info = probe(reads) if kind in ("video", "audio") else None
        except AssetlineError as exc:
            raise renamed(exc, reads, path) from None
        yield Asset(path=path, sha256=digest, kind=kind, bytes=size, reads=reads, info=info, fingerprint=fingerprint)
    finally:
        os.close(fd)


def _open_confined(path: Path, root: Path | None) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)  # NONBLOCK: a FIFO can't hang us
    except PermissionError:
        raise BadInputError(path, "cannot read file: permission denied") from None
    except FileNotFoundError:
        raise BadInputError(path, "no such file") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot read file: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInputError(path, "not a regular file")
        if root is not None:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
            top = Path(root).resolve()
            if not real.is_relative_to(top):
                raise BadInputError(path, f"leads outside {top} (to {real}): refused, not followed")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sha256_fd(path: Path, fd: int) -> str:
    digest = hashlib.sha256()
    try:
        offset = 0
        while chunk := os.pread(fd, _CHUNK, offset):  # pread: the descriptor's own offset stays at 0
            digest.update(chunk)
            offset += len(chunk)
    except OSError as exc:
        raise BadInputError(path, f"cannot read file: {exc.strerror}") from None
    return digest.hexdigest()


def renamed(exc: AssetlineError, reads: Path, path: Path) -> AssetlineError:
    """`exc` naming the input as the user named it, not by the descriptor it was read through."""
    if exc.subject == str(reads):
        exc.subject = str(path)
        exc.args = (exc.line(),)
    return exc


def is_up_to_date(asset: Asset, out_root: Path, outputs: list[str], recipe_sha256: str) -> bool:
    """True when every expected output exists, verifies, and came from this input and recipe."""
    if not outputs:
        return False
    folder = out_root / asset.folder_name
    hashes = {asset.path.resolve(): asset.sha256}  # the source was hashed when it was identified: not again
    for name in outputs:
        verdict = verify_output(folder / name, require_trust=False, hashes=hashes)  # fresh is not trusted: verify asks that
        m = verdict.manifest
        if not verdict.ok or m is None or m.recipe_sha256 != recipe_sha256:
            return False
        if not any(ref.role == "source" and ref.sha256 == asset.sha256 for ref in m.inputs):
            return False
    return True


def discover(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[tuple[Path, Path]], list[BadInputError]]:
    """Files named, and files found in folders named (recursively), in a stable order, each with its root.

    Inside a folder, hidden entries, assetline's own output trees (`exclude`)
    and symlinks that lead outside the folder are skipped; a symlink skipped
    that way is reported, not followed. The root is what the file must stay
    inside when it is opened (`opened(path, root)`): the folder it was found
    in, or, for a file named directly, the folder it resolved to now.
    """
    excluded = [p.resolve() for p in exclude]
    found: list[tuple[Path, Path]] = []
    problems: list[BadInputError] = []
    seen: set[Path] = set()

    def add(p: Path, root: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append((p, root))

    for given in paths:
        if not given.exists() and not given.is_symlink():
            problems.append(BadInputError(given, "no such file or folder"))
            continue
        if not given.is_dir():
            add(given, given.resolve().parent)
            continue
        root = given.resolve()
        for dirpath, dirnames, filenames in os.walk(given, followlinks=False):
            current = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                full = current / d
                if d.startswith(".") or d == STAGING_DIR or full.resolve() in excluded:
                    continue
                if full.is_symlink():
                    problems.append(BadInputError(full, "symlink to a folder: not followed"))
                    continue
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                full = current / name
                if name.startswith(".") or name.endswith((SIDECAR_SUFFIX, ".c2pa")):  # provenance, not media
                    continue
                if full.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(root):
                        problems.append(BadInputError(full, f"symlink points outside {given}: not followed"))
                        continue
                add(full, root)
    return found, problems
