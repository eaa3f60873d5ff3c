"""The per-asset lock across machines: a Prefect global concurrency slot with a lease, held by the server.

`storage.asset_lock` keeps one run at a time on an asset with an `flock` on
`OUT/.assetline-locks/`. That holds on one machine, but workers on several
machines share the output root over NFS or SMB, where flock is not reliable
everywhere. So a run from a work pool also takes a slot, on the Prefect
server, of the global concurrency limit (limit 1) that its asset's folder name
hashes to, `assetline-asset-000` .. `assetline-asset-fff`:

- **The server holds it**, so every machine sees the same lock, whatever the
  share does with flock.
- **Leased**, not owned: the holder renews it every quarter of
  `ASSETLINE_ASSET_LEASE_SECONDS` (default 60 s) on a thread of its own, so a
  server restart shorter than most of a lease costs it nothing.
  A holder killed with its machine stops renewing, and the server's
  repossessor frees the slot once the lease expires (within one of its 15 s
  loops). That is sooner than the zombie automation marks the run Crashed
  (90 s without a heartbeat), so the re-run finds the slot free.
- **Leases outlive a server restart** only where the server keeps them
  somewhere lasting: `PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE`, set by
  `assetline serve`, the compose file and the README to Prefect's filesystem
  storage (one server) or `prefect_redis.lease_storage` (several servers on one
  Redis). With Prefect's default in-memory storage, a restart forgets the
  lease but not the occupied slot, and the next run on that bucket would wait
  forever.
- **4096 buckets**, not one limit per asset: the limits are rows that stay,
  and their number stays bounded at any scale. Two assets share a bucket with
  odds of 1 in 4096, and then one waits for the other to finish: a delay, never
  a wrong output.

`ASSETLINE_ASSET_LOCK` chooses: `auto` (the default) takes the server's slot
in a run from a work pool (a worker, possibly one of many machines) and not
under `assetline run` or `serve`, which run on one machine where the flock is
enough; `server` takes it wherever a Prefect API is set (for `assetline
review` against a cluster); `file` never does.

The server may be down for a moment (a restart, a failover). A run that reaches
its asset then waits for it, up to 10 minutes, before it takes the slot.
Renewal that fails (the server down for longer than a lease) logs a warning and
the run goes on; so does a release that fails, whose slot is freed when its
lease runs out. The flock and the atomic publish still keep the outputs whole.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import ContextManager

from assetline.settings import settings

log = logging.getLogger(__name__)

BUCKETS = 4096
PREFIX = "assetline-asset-"
SERVER_PATIENCE_S = 600  # how long a run waits for an unreachable server before it takes or frees its slot


def bucket(asset_dir_name: str) -> str:
    """The name of the global concurrency limit that guards the asset folder `asset_dir_name`."""
    digest = hashlib.sha256(asset_dir_name.encode()).hexdigest()
    return f"{PREFIX}{int(digest[:3], 16) % BUCKETS:03x}"


def wanted() -> bool:
    """Whether this process should take the server's slot (see `ASSETLINE_ASSET_LOCK`)."""
    mode = settings().asset_lock
    if mode == "file":
        return False
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return False  # no server to hold it (a temporary one is this process's own)
    if mode == "server":
        return True
    from assetline.orchestration import in_work_pool_run

    return in_work_pool_run()


def _ensure_limit(name: str, client) -> None:
    """Create the limit `name` (1 slot) unless it exists; two machines racing to make it both end up using it."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    except ObjectAlreadyExists:
        pass


def _holder():
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        return ConcurrencyLeaseHolder(type="flow_run", id=ctx.flow_run.id)
    return None


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the server is down or restarting (worth waiting for), not that it said no."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, PrefectHTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, (httpx.TransportError, OSError))


def _call(what: str, asset_dir_name: str, fn, *, patience_s: float):
    """`fn(client)` on a fresh client, waited out while the server is unreachable for up to `patience_s`.

    A fresh Prefect client does not retry a refused connection (only one that
    has connected once does), and a run that reaches its asset while the server
    restarts should wait for it, not fail.
    """
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + patience_s
    delay = 1.0
    while True:
        try:
            with get_client(sync_client=True) as client:
                return fn(client)
        except Exception as exc:
            if not _unreachable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s for %s: the Prefect server is unreachable (%s); trying again in %.0f s",
                        what, asset_dir_name, type(exc).__name__, delay)  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _acquire(name: str, asset_dir_name: str, lease: float):
    """Take the slot of limit `name`, waiting while another run holds it; returns the lease's id."""
    from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
    from prefect.exceptions import PrefectHTTPStatusError

    holder = _holder()
    while True:
        try:
            response = _call("taking its slot", asset_dir_name, patience_s=SERVER_PATIENCE_S, fn=lambda c: (
                c.increment_concurrency_slots_with_lease([name], 1, "concurrency", lease, holder)))
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: another run holds it
                raise
            time.sleep(min(float(exc.response.headers.get("Retry-After", 1)), 5.0))
            continue
        granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        if granted.limits:
            return granted.lease_id
        # The limit is not there (deleted by hand, or a server whose database was reset): make it again.
        _call("making its limit", asset_dir_name, patience_s=SERVER_PATIENCE_S, fn=lambda c: _ensure_limit(name, c))


def _renew_until(stop: threading.Event, lease_id, asset_dir_name: str, lease: float) -> None:
    """Renew the lease every 0.25 of its length until `stop`; a failed renewal is logged and tried again."""
    while not stop.wait(lease / 4):
        try:
            _call("renewing its lease", asset_dir_name, patience_s=lease / 2,
                  fn=lambda c: c.renew_concurrency_lease(lease_id, lease))  # fmt: skip
        except Exception as exc:  # the run goes on: the flock and the atomic publish keep outputs whole
            from prefect.exceptions import PrefectHTTPStatusError

            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code == 404:
                log.warning("the server's slot for %s was freed while the run held it (its lease ran out while "
                            "the server was unreachable); the run goes on under the file lock", asset_dir_name)
                return
            log.warning("renewing the server's slot for %s failed (%s: %s); the run goes on under the file lock",
                        asset_dir_name, type(exc).__name__, exc)  # fmt: skip


@contextmanager
def server_slot(asset_dir_name: str) -> Iterator[None]:
    """Hold the asset's slot on the Prefect server for the block: waits while another run holds it."""
    name = bucket(asset_dir_name)
    lease = float(settings().asset_lease_seconds)
    log.debug("taking %s for %s (lease %.0f s)", name, asset_dir_name, lease)
    lease_id = _acquire(name, asset_dir_name, lease)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew_until, args=(stop, lease_id, asset_dir_name, lease),
                               name=f"assetline-lease-{name}", daemon=True)  # fmt: skip
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)
        try:
            _call("freeing its slot", asset_dir_name, patience_s=lease,
                  fn=lambda c: c.release_concurrency_slots_with_lease(lease_id))  # fmt: skip
        except Exception as exc:  # the outputs are published: the lease runs out on its own
            log.warning("freeing the server's slot for %s failed (%s); it is freed when its lease runs out (%.0f s)",
                        asset_dir_name, type(exc).__name__, lease)  # fmt: skip


def cluster_slot(asset_dir_name: str) -> ContextManager[None]:
    """The server's slot for this asset where `wanted()`, else nothing."""
    return server_slot(asset_dir_name) if wanted() else nullcontext()
