"""Files on disk: content hashing, atomic writes, and per-asset staging.

Outputs appear whole or not at all: everything is written under a hidden
staging folder in the output root (same file system), then renamed into place.

Every file is written the one way `atomic_path` gives (`write_atomically` for
bytes): into a temporary beside it, then renamed over it. A process killed
mid-asset (SIGKILL, power cut) leaves its staging folder, or such a temporary,
behind. Each one is held under an
exclusive `flock` while in use; the next run removes only those whose lock it
can take, so a folder another live process (or thread) is writing is never
touched.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assetline.errors import AssetlineError, OutputError
from assetline.failures import Blame, blame, describe_os_error, output_errors

STAGING_DIR = ".assetline-staging"
_CHUNK = 1 << 20
# A staging folder is made under this prefix, locked, then renamed to its real name, so a
# cleaner never sees an unlocked folder in use. One left by a crash in that instant is
# removed once it is this old (seconds).
_NEW_PREFIX = ".new-"
_ABANDONED_NEW_AGE = 600
# What atomic_path's temporaries are called: `.<name>.<random>.tmp`.
_TEMPORARY = re.compile(r"^\..+\.tmp$")


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


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on `fd` without waiting; False when someone holds it (or locks don't work here)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _same_file(path: str | Path, fd: int) -> bool:
    try:
        st, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A fresh `.<name>.<random>.tmp` beside `path`, open and flock-held (see `remove_stale_temporaries`)."""
    for _ in range(5):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _try_lock(fd)  # where flock does not work, cleaners cannot take it either
        if _same_file(tmp, fd):
            return fd, tmp
        os.close(fd)  # a cleaner removed it in the instant before the lock: take another name
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary file beside `path` for a writer to fill (our code, ffmpeg, PyAV, c2pa); then it becomes `path`.

    Readers see the old `path` or the new one, never half of it. The temporary,
    `.<name>.<random>.tmp` in the same folder, is created empty with `mode`
    (default: what a plain open() gives a new file; 0o600 for a private key) and
    held under a flock, so a later run can tell an abandoned one from one in use.
    The writer writes into it in place (truncating is fine, replacing it is not).
    On a clean exit it is flushed to disk and renamed over `path`; on any
    exception it is removed. Failing to make, flush or rename it is an
    `OutputError` naming `path`; what the writer raises passes through as it is.
    """
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _locked_temporary(path)
    try:
        with output_errors(path):
            os.fchmod(fd, _FILE_MODE if mode is None else mode)
        yield Path(tmp)
        with output_errors(path):
            if not _same_file(tmp, fd):
                raise OutputError(path, "the temporary file was replaced while it was written")
            os.fsync(fd)
            os.replace(tmp, path)  # before the lock goes with the close
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half (see `atomic_path`)."""
    with atomic_path(path, mode) as tmp, output_errors(path):
        tmp.write_bytes(data)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove `.<name>.*.tmp` files in `folder` that no live writer holds; returns what was removed.

    Only regular files named like a temporary are candidates, and each is removed
    only while this process holds its lock: a file being written is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMPORARY.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if _try_lock(fd) and _same_file(entry.path, fd):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def clean_stale_staging(out_root: Path) -> list[Path]:
    """Remove staging folders under `out_root` left by a process that died; returns what was removed.

    A folder is removed only while this process holds its lock, which the process
    staging into it holds until it is done: a folder in use, by this process or
    another, is never touched. The staging root itself goes when empty.
    """
    root = out_root / STAGING_DIR
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:  # no staging root (the usual case), or not readable: nothing to do
        return removed
    now = time.time()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue  # staging holds folders only; anything else is not ours to judge
        try:
            if entry.name.startswith(_NEW_PREFIX) and now - entry.stat(follow_symlinks=False).st_mtime < _ABANDONED_NEW_AGE:
                continue  # being set up this instant
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if _try_lock(fd) and _same_file(entry.path, fd):
                shutil.rmtree(entry.path, ignore_errors=True)  # never follows symlinks inside
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    try:
        root.rmdir()  # only when empty
    except OSError:
        pass
    return removed


@contextmanager
def staging_folder(out_root: Path, asset_dir_name: str) -> Iterator[Path]:
    """A private folder for one asset's outputs, removed on exit whatever happens.

    Callers write every output into it and `publish` the finished files; a
    failure anywhere leaves nothing in the output tree. The folder is held under
    an exclusive flock until it is removed; staging folders nobody holds (left by
    a killed process) are cleaned away first.
    """
    clean_stale_staging(out_root)
    root = out_root / STAGING_DIR
    fresh = root / f"{_NEW_PREFIX}{uuid.uuid4().hex}"
    for attempt in range(3):
        try:
            fresh.mkdir(parents=True)
            break
        except FileNotFoundError:
            continue  # another asset removed the (then empty) staging root just now
        except OSError as exc:
            raise OutputError(out_root, describe_os_error(exc)) from exc
    else:
        raise OutputError(out_root, "could not create a staging folder")
    folder = root / f"{asset_dir_name}.{uuid.uuid4().hex[:12]}"
    lock = None
    try:
        lock = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY)
        _try_lock(lock)  # where locks don't work, cleaners can't lock it either: still safe
        os.rename(fresh, folder)  # the lock stays with the folder
    except OSError as exc:
        if lock is not None:
            os.close(lock)
        shutil.rmtree(fresh, ignore_errors=True)
        raise OutputError(out_root, describe_os_error(exc)) from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)
        try:
            root.rmdir()  # only when empty: other assets may still be staging
        except OSError:
            pass


def publish(staged: list[Path], final_dir: Path) -> list[Path]:
    """Move finished files from staging into `final_dir`, in the order given.

    Each move is an atomic rename on one file system. Callers put sidecars
    after the files they describe, so a sidecar never points at a missing file.
    """
    with output_errors(final_dir):
        final_dir.mkdir(parents=True, exist_ok=True)
        moved = []
        for src in staged:
            dst = final_dir / src.name
            os.replace(src, dst)
            moved.append(dst)
        return moved


_TEMPORARY_OF = re.compile(r"^\.(.+)\.[^.]+\.tmp$")


def _within(path: str | Path, folder: Path) -> Path | None:
    """`path` relative to `folder`, or None when it lies elsewhere."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return None


def in_final_terms(path: str | Path, stage: Path, final_dir: Path) -> Path:
    """The published name of a path in a staging folder (a temporary names the file it becomes)."""
    rel = _within(path, stage)
    if rel is None:
        return Path(path)
    if not rel.parts:
        return final_dir
    match = _TEMPORARY_OF.match(rel.parts[0])
    return final_dir / (match.group(1) if match else rel.parts[0])


def restate_staged_error(exc: BaseException, stage: Path, final_dir: Path) -> AssetlineError | None:
    """A failure while making an asset's outputs, stated for the user; None when it needs no restating.

    A full disk or a read-only file system is always the output's fault, whatever
    library raised it (Pillow, PyAV, a step's own write): an `OutputError` naming
    the output folder (or the file, when the error names one). Permission denied
    is the output's fault when it names a file in the staging or output folder.
    One of assetline's own errors that names a staged file is restated with the
    file's published name: the hidden staging folder means nothing to a user.
    """
    if isinstance(exc, AssetlineError):
        if exc.subject is None or _within(exc.subject, stage) is None:
            return None
        try:
            return type(exc)(in_final_terms(exc.subject, stage, final_dir), exc.cause)
        except TypeError:  # a subclass with another signature: leave it as it is
            return None
    if not isinstance(exc, OSError):
        return None
    named = exc.filename if isinstance(exc.filename, (str, Path)) else None
    ours = named is not None and (_within(named, stage) is not None or _within(named, final_dir) is not None)
    whose = blame(exc)
    if whose is Blame.OUTPUT or (whose is Blame.NAMED_OUTPUT and ours):
        return OutputError(in_final_terms(named, stage, final_dir) if ours else final_dir, describe_os_error(exc))
    return None


def fsync_file(path: Path) -> None:
    """Flush a file written by a library (Pillow, ffmpeg) to disk before it is published."""
    with output_errors(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


LOCKS_DIR = ".assetline-locks"


@contextmanager
def asset_lock(out_root: Path, asset_dir_name: str) -> Iterator[None]:
    """Hold the output root's lock for one asset: one process (or thread) at a time works on it.

    The same file can reach two runs at once (the watcher's event and the
    catch-up batch, two workers, a retry): the second waits here, then finds
    the outputs up to date. An `flock` on `OUT/.assetline-locks/<asset>.lock`,
    released by the kernel if its holder dies, so a killed run never blocks
    the next. The small lock files stay (unlinking one while another process
    waits on it would let two in). Runs from a work pool, possibly on several
    machines sharing the output root, also hold the asset's slot on the Prefect
    server first (`asset_lease`), since flock on a share is not reliable everywhere.
    """
    from assetline.asset_lease import cluster_slot

    folder = out_root / LOCKS_DIR
    with output_errors(out_root):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{asset_dir_name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with cluster_slot(asset_dir_name):  # across machines: the server's leased slot (asset_lease.py)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
    finally:
        os.close(fd)  # releases the lock

