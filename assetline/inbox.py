"""The inbox: what counts as an arrived file, and the watcher that announces it as a Prefect event.

A file has arrived when it is complete: not hidden or partial (`.part`,
`.tmp`, `.crdownload`, `~$*`, dotfiles: the recipe's `inbox.ignore`), its size
and mtime unchanged for `inbox.hold_seconds`, and no process here holding it
open for writing. A move or rename into the inbox counts as an arrival. The
same content arriving twice (under another name, or again) is announced once
per watcher.

The announcement is the event `assetline.asset.arrived` with the path
(relative to the inbox) and the content's sha256 in its payload; the
`process-asset` deployment's trigger turns it into a flow run. Any other
system can post the same event to the server's `POST /api/events` instead.
Paths in events are confined to the inbox by `confine`, in the flow run.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assetline.config import InboxOptions
from assetline.errors import BadInputError
from assetline.provenance.manifest import SIDECAR_SUFFIX
from assetline.storage import STAGING_DIR, sha256_file

ARRIVED = "assetline.asset.arrived"
RESOURCE_PREFIX = "assetline.asset."

log = logging.getLogger("assetline.inbox")


def confine(path: str | Path, inbox: str | Path) -> Path:
    """The file `path` names inside `inbox` (absolute, or relative to it), or `BadInputError`.

    Refused: anything that is not inside the inbox once `..` is resolved, and a
    symlink (or a path through one) leading out of it.
    """
    root = Path(inbox).resolve()
    raw = Path(path)
    if "\x00" in str(path) or str(path).strip() == "":
        raise BadInputError(path, "is not a usable path: refused")
    candidate = raw if raw.is_absolute() else root / raw
    lexical = Path(os.path.normpath(candidate))
    if not lexical.is_relative_to(root):
        raise BadInputError(path, f"is outside the inbox {root}: refused")
    real = lexical.resolve()
    if not real.is_relative_to(root):
        raise BadInputError(path, f"leads outside the inbox {root} through a symlink: refused")
    return lexical


def is_ignored(path: Path, inbox: Path, patterns: list[str]) -> bool:
    """Hidden and partial files, provenance sidecars, and anything under a hidden folder or assetline's staging."""
    try:
        parts = path.relative_to(inbox).parts
    except ValueError:
        return True
    if any(p.startswith(".") or p == STAGING_DIR for p in parts[:-1]):
        return True
    if not parts or parts[-1].endswith((SIDECAR_SUFFIX, ".c2pa")):  # provenance travelling with media
        return True
    return any(fnmatch.fnmatchcase(parts[-1], pat) for pat in patterns)


def open_for_writing(path: Path) -> bool:
    """True when a process on this machine holds `path` open with write access (Linux /proc)."""
    target = str(path)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next((line.split()[1] for line in info if line.startswith("flags:")), "0")
                if int(flags, 8) & (os.O_WRONLY | os.O_RDWR):
                    return True
            except (OSError, ValueError):
                continue
    return False


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    changed_at: float


def emit_arrival(path: Path, inbox: Path, sha256: str, size: int) -> None:
    """Announce one arrived file to the Prefect server (the path relative to the inbox)."""
    from prefect.events import emit_event

    relative = path.relative_to(inbox).as_posix()
    emit_event(
        event=ARRIVED,
        resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{sha256}", "prefect.resource.name": path.name},
        payload={"path": relative, "sha256": sha256, "bytes": size},
    )


class InboxWatcher:
    """Watches `inbox` (recursively) and calls `announce(path, sha256, size)` once per complete new file."""

    def __init__(
        self,
        inbox: Path,
        options: InboxOptions,
        announce: Callable[[Path, str, int], None] | None = None,
        exclude: list[Path] | tuple[Path, ...] = (),
    ) -> None:
        self.inbox = inbox.resolve()
        self.options = options
        self.announce = announce or (lambda p, sha, size: emit_arrival(p, self.inbox, sha, size))
        self.exclude = [p.resolve() for p in exclude]
        self._pending: dict[Path, _Pending] = {}
        self._seen: dict[str, Path] = {}  # sha256 -> first path announced with it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = None
        self._settler: threading.Thread | None = None

    # watchdog callbacks (observer thread)
    def saw(self, path: str | bytes) -> None:
        p = Path(os.fsdecode(path))
        if any(p == e or p.is_relative_to(e) for e in self.exclude):
            return
        if is_ignored(p, self.inbox, self.options.ignore):
            return
        with self._lock:
            self._pending.pop(p, None)  # restart the hold: it changed just now
            self._pending[p] = _Pending(-1, -1, time.monotonic())

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory:
                    if event.event_type in ("created", "moved"):  # a folder moved in: its files arrived too
                        folder = Path(os.fsdecode(event.dest_path or event.src_path))
                        for child in folder.rglob("*"):
                            if child.is_file():
                                watcher.saw(str(child))
                    return
                if event.event_type in ("created", "modified", "closed"):
                    watcher.saw(event.src_path)
                elif event.event_type == "moved":
                    watcher.saw(event.dest_path)

        if self.options.observer == "polling":
            self._observer = PollingObserver(timeout=self.options.poll_seconds)
        else:
            self._observer = Observer()
        self._observer.schedule(Handler(), str(self.inbox), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        self._settler = threading.Thread(target=self._settle_loop, name="inbox-settle", daemon=True)
        self._settler.start()
        log.info("watching %s (%s observer, hold %.1f s)", self.inbox, self.options.observer, self.options.hold_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
        if self._settler is not None:
            self._settler.join(timeout=10)

    def _settle_loop(self) -> None:
        while not self._stop.wait(min(self.options.poll_seconds, max(self.options.hold_seconds, 0.1))):
            try:
                self.settle()
            except Exception:  # the watcher must outlive any one bad file
                log.exception("inbox watcher: settle pass failed")

    def settle(self) -> list[Path]:
        """One pass: announce every pending file that has been stable for the hold time."""
        now = time.monotonic()
        ready = []
        with self._lock:
            for path, seen in list(self._pending.items()):
                try:
                    st = path.stat()
                except OSError:
                    del self._pending[path]  # gone again (a temp file renamed away, or deleted)
                    continue
                if not path.is_file():
                    del self._pending[path]
                    continue
                if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                    self._pending[path] = _Pending(st.st_size, st.st_mtime_ns, now)
                    continue
                if now - seen.changed_at >= self.options.hold_seconds:
                    ready.append(path)
        announced = []
        for path in ready:
            if open_for_writing(path):
                with self._lock:
                    if path in self._pending:
                        self._pending[path].changed_at = time.monotonic()  # still being written: hold on
                continue
            with self._lock:
                self._pending.pop(path, None)
            if self._announce(path):
                announced.append(path)
        return announced

    def _announce(self, path: Path) -> bool:
        try:
            size = path.stat().st_size
            sha = sha256_file(path)
        except OSError as exc:
            log.warning("%s: cannot read (%s): not announced", path, exc.strerror)
            return False
        first = self._seen.get(sha)
        if first is not None:
            log.info("%s: same content as %s, already announced: not processed again", path, first)
            return False
        self._seen[sha] = path
        try:
            self.announce(path, sha, size)
        except Exception as exc:
            self._seen.pop(sha, None)
            log.error("%s: could not announce the arrival: %s", path, exc)
            return False
        log.info("arrived: %s (sha256 %s)", path, sha[:12])
        return True
