"""Files on disk: content hashing, atomic writes, and per-asset staging.

Outputs appear whole or not at all: everything is written under a hidden
staging folder in the output root (same file system), then renamed into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assetline.errors import OutputError

STAGING_DIR = ".assetline-staging"
_CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; published files get the permissions a plain open() would give.
_FILE_MODE = 0o666 & ~_current_umask()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the output device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "output folder is not writable"
    return exc.strerror or str(exc)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk,
    then renamed over `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, _describe_os_error(exc)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staging_folder(out_root: Path, asset_dir_name: str) -> Iterator[Path]:
    """A private folder for one asset's outputs, removed on exit whatever happens.

    Callers write every output into it and `publish` the finished files; a
    failure anywhere leaves nothing in the output tree.
    """
    root = out_root / STAGING_DIR
    folder = root / f"{asset_dir_name}.{uuid.uuid4().hex[:12]}"
    for attempt in range(3):
        try:
            folder.mkdir(parents=True)
            break
        except FileNotFoundError:
            continue  # another asset removed the (then empty) staging root just now
        except OSError as exc:
            raise OutputError(out_root, _describe_os_error(exc)) from exc
    else:
        raise OutputError(out_root, "could not create a staging folder")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            root.rmdir()  # only when empty: other assets may still be staging
        except OSError:
            pass


def publish(staged: list[Path], final_dir: Path) -> list[Path]:
    """Move finished files from staging into `final_dir`, in the order given.

    Each move is an atomic rename on one file system. Callers put sidecars
    after the files they describe, so a sidecar never points at a missing file.
    """
    try:
        final_dir.mkdir(parents=True, exist_ok=True)
        moved = []
        for src in staged:
            dst = final_dir / src.name
            os.replace(src, dst)
            moved.append(dst)
        return moved
    except OSError as exc:
        raise OutputError(final_dir, _describe_os_error(exc)) from exc


def fsync_file(path: Path) -> None:
    """Flush a file written by a library (Pillow, ffmpeg) to disk before it is published."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(path, _describe_os_error(exc)) from exc
