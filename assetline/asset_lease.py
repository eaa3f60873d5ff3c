"""The per-asset lock across machines: a Prefect global concurrency slot with a lease, held by the server.

`storage.asset_lock` keeps one run at a time on an asset with an `flock` on
`OUT/.assetline-locks/`. That holds on one machine, but workers on several
machines share the output root over NFS or SMB, where flock is not reliable
everywhere. So a run from a work pool also takes a slot, on the Prefect
server, of the global concurrency limit (limit 1) that its asset's folder name
hashes to, `assetline-asset-000` .. `assetline-asset-fff`:

- **The server holds it**, so every machine sees the same lock, whatever the
  share does with flock.
- **Leased**, not owned: the holder's Prefect client renews it every
  `0.75 x ASSETLINE_ASSET_LEASE_SECONDS` (default 60 s) on a thread of its own.
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
review` against a cluster); `file` never does. Renewal that fails (the server
down for longer than a lease) logs a warning and the run goes on: the flock
and the atomic publish still keep the outputs whole.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import ContextManager

from assetline.settings import settings

log = logging.getLogger(__name__)

BUCKETS = 4096
PREFIX = "assetline-asset-"


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
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    return bool(run is not None and run.work_pool_name)


def _ensure_limit(name: str) -> None:
    """Create the limit `name` (1 slot) unless it exists; two machines racing to make it both end up using it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
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


@contextmanager
def server_slot(asset_dir_name: str) -> Iterator[None]:
    """Hold the asset's slot on the Prefect server for the block: waits while another run holds it."""
    from prefect.concurrency.sync import concurrency

    name = bucket(asset_dir_name)
    _ensure_limit(name)
    lease = float(settings().asset_lease_seconds)
    log.debug("taking %s for %s (lease %.0f s)", name, asset_dir_name, lease)
    with concurrency(name, occupy=1, lease_duration=lease, strict=True, holder=_holder(),
                     raise_on_lease_renewal_failure=False):  # fmt: skip
        yield


def cluster_slot(asset_dir_name: str) -> ContextManager[None]:
    """The server's slot for this asset where `wanted()`, else nothing."""
    return server_slot(asset_dir_name) if wanted() else nullcontext()
