"""Machine-wide slots for the heavy steps: at most N of a step at once on this host, freed when the holder dies.

Why an OS lock, not a Prefect global concurrency limit: a Prefect slot is a
row on the server that only its taker gives back. A taker killed by SIGKILL,
the OOM killer or a lost machine never does, and the temporary server keeps
the row across restarts (measured on Prefect 3.9.1: `active_slots` stays 1
with `slot_decay_per_second` 0, and the next render waits forever). A lease
would free it only after it expires. An `flock` belongs to the open file, so
the kernel drops it the instant its process dies, however it dies: the next
waiter gets the slot within one poll (`POLL_SECONDS`), nothing to reconcile,
whether the CLI, a served flow-run process, a worker or the server was killed.
The slots protect one machine's cores, so a lock local to the machine is the
right scope: the folder is on local disk (`$ASSETLINE_SLOTS_DIR`, by default
under the system's temporary folder), never on shared storage, where flock is
unreliable.

What ops see: each slot is a file whose holder writes one JSON line (step,
asset, flow run, pid, since) into it; `assetline slots` prints them, a waiting
step logs who holds what (in the UI's run log), and each take and release is a
Prefect event (`assetline.slot.acquired` / `.released`, resource
`assetline.slot.<step>.<host>.<n>`, related to the flow run) in the event feed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from assetline.errors import OutputError
from assetline.settings import settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how soon a freed slot is taken: far inside the 10 s a user would notice
HEAVY_STEPS = ("transcribe", "render_video")  # the keys of config.LimitOptions
EVENT_PREFIX = "assetline.slot"


def host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def slots_dir() -> Path:
    """This machine's slot files: `$ASSETLINE_SLOTS_DIR`, or `<tmp>/assetline-slots-<uid>`."""
    return settings().slots_dir or Path(tempfile.gettempdir()) / f"assetline-slots-{os.getuid()}"


@dataclass(frozen=True)
class Holder:
    """Who holds one slot now (read from its file); `None` fields when the file says nothing."""

    step: str
    slot: int
    pid: int | None = None
    asset: str | None = None
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    since: str | None = None

    def describe(self) -> str:
        who = self.asset or self.flow_run_name or "?"
        run = f", flow run {self.flow_run_id}" if self.flow_run_id else ""  # the UI's /runs/flow-run/<id>
        return f"{who}{run} (pid {self.pid}, since {self.since})"


def _slot_file(step: str, index: int) -> Path:
    return slots_dir() / f"{step}.{index}.lock"


def _open_slot(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OutputError(path.parent, f"cannot use the slots folder: {exc.strerror} (set ASSETLINE_SLOTS_DIR)") from None


def _try_take(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


def _is_held(path: Path) -> bool:
    """Whether a live process holds the slot at `path` (a probe that takes and drops it when free)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if _try_take(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


def holders(step: str | None = None) -> list[Holder]:
    """The slots held on this machine now, by step, as their holders described them."""
    found = []
    for path in sorted(slots_dir().glob(f"{step or '*'}.*.lock")):
        name, _, index = path.name.removesuffix(".lock").rpartition(".")
        if not index.isdigit() or not _is_held(path):
            continue
        try:
            record = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        found.append(Holder(step=name, slot=int(index), **{k: record.get(k) for k in
                                                            ("pid", "asset", "flow_run_id", "flow_run_name", "since")}))  # fmt: skip
    return found


def _run_context() -> tuple[str | None, str | None]:
    """The current flow run's id and name, when inside one."""
    try:
        from prefect.runtime import flow_run

        return flow_run.get_id(), flow_run.get_name()
    except Exception:
        return None, None


def _emit(event: str, step: str, index: int, record: dict) -> None:
    """Tell the Prefect UI (event feed), best effort: a slot never waits on the API."""
    try:
        from prefect.events import emit_event

        related = []
        if record.get("flow_run_id"):
            related.append({"prefect.resource.id": f"prefect.flow-run.{record['flow_run_id']}",
                            "prefect.resource.role": "flow-run", "prefect.resource.name": record.get("flow_run_name") or ""})  # fmt: skip
        emit_event(
            event=f"{EVENT_PREFIX}.{event}",
            resource={"prefect.resource.id": f"{EVENT_PREFIX}.{step}.{host()}.{index}", "prefect.resource.name": f"{step}@{host()} #{index}"},
            related=related,
            payload={k: v for k, v in record.items() if v is not None},
        )  # fmt: skip
    except Exception as exc:  # no API, no events worker: the lock itself is what counts
        log.debug("slot event not sent: %s", exc)


@contextmanager
def heavy_slot(step: str, slots: int, asset: str | None = None, logger: logging.Logger | None = None) -> Iterator[int]:
    """Hold one of this machine's `slots` slots for `step` while the block runs (0: no limit). Yields its index.

    Waits, polling every `POLL_SECONDS`, while all are taken; logs once who holds them.
    """
    if slots <= 0:
        yield -1
        return
    logger = logger or log
    fds = {i: _open_slot(_slot_file(step, i)) for i in range(slots)}
    taken = None
    try:
        waited_since, told = time.monotonic(), False
        while taken is None:
            taken = next((i for i, fd in fds.items() if _try_take(fd)), None)
            if taken is None:
                if not told:
                    busy = "; ".join(h.describe() for h in holders(step) if h.slot < slots) or "starting"
                    logger.info("%s: waiting for one of %d %s slot(s) on %s, held by %s", asset or step, slots, step, host(), busy)
                    told = True
                time.sleep(POLL_SECONDS)
        for i, fd in fds.items():
            if i != taken:
                os.close(fd)
        fd = fds[taken]
        run_id, run_name = _run_context()
        record = {"step": step, "slot": taken, "host": host(), "pid": os.getpid(), "asset": asset or run_name,
                  "flow_run_id": run_id, "flow_run_name": run_name,
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        if told:
            logger.info("%s: took %s slot %d on %s after %.1f s", asset or step, step, taken, host(), time.monotonic() - waited_since)
        _emit("acquired", step, taken, record)
        try:
            yield taken
        finally:
            os.ftruncate(fd, 0)  # still ours: nobody else can write it until the close below drops the lock
            _emit("released", step, taken, record)
    finally:
        if taken is None:
            for fd in fds.values():
                os.close(fd)
        else:
            os.close(fds[taken])  # releases the lock
