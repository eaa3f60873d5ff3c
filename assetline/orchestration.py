"""How steps run under Prefect: retries for transient failures only, and machine-wide slots for heavy steps.

One mechanism for every flow: `configured(recipe, *steps)` returns the step
tasks with the recipe's retry policy and, for the heavy steps, the tag of
this host's concurrency limit. `ensure_limits` creates (or resizes) those
limits on the server before any run starts.

Retries: a bad input, a missing model, a full disk or a recipe error fails at
once (retrying cannot help, and would hide the cause); an interrupted read on
a network share, a timeout, a dropped connection are retried with doubling
waits.

Limits: Prefect's tag-based concurrency. A task tagged `heavy:transcribe@HOST`
takes a slot of the global limit `tag:heavy:transcribe@HOST` before it runs.
Naming the host keeps the limit per machine when several machines share one
Prefect server: each machine has its own CPU to protect.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from assetline.config import LimitOptions, Recipe
from assetline.errors import AssetlineError

log = logging.getLogger(__name__)

HEAVY_STEPS = ("transcribe", "render_video")  # the keys of LimitOptions

TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EIO", "EAGAIN", "EBUSY", "EINTR", "ETIMEDOUT", "ESTALE", "ECONNRESET", "ECONNREFUSED",
                 "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "ENOLCK", "EREMOTEIO")  # fmt: skip
    if hasattr(errno, name)
)


def is_transient(exc: BaseException | None) -> bool:
    """True for failures a retry can cure: I/O hiccups, timeouts, dropped connections."""
    if exc is None or isinstance(exc, AssetlineError):
        return False  # our own errors are about the input, the model, the recipe or the disk: final
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's `retry_condition_fn`: retry only when the failure was transient."""
    exc = state.data if isinstance(state.data, BaseException) else None
    transient = is_transient(exc)
    if exc is not None and not transient:
        log.info("%s: not retried (%s is not transient)", task_run.name, type(exc).__name__)
    return transient


def host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def heavy_tag(step: str) -> str:
    return f"heavy:{step}@{host()}"


def configured(recipe: Recipe, *steps: Any) -> Any:
    """The step tasks with this recipe's retries and, for heavy steps, their machine slot tag."""
    retries = recipe.run.retries
    delays = [retries.delay_seconds * 2**i for i in range(retries.attempts)] or 0
    out = []
    for step in steps:
        tags = set(step.tags)
        if step.name in HEAVY_STEPS and getattr(recipe.run.limits, step.name) > 0:
            tags.add(heavy_tag(step.name))
        out.append(
            step.with_options(
                retries=retries.attempts,
                retry_delay_seconds=delays,
                retry_jitter_factor=0.2 if retries.attempts else None,
                retry_condition_fn=retry_if_transient,
                tags=tags,
            )
        )
    return out[0] if len(out) == 1 else out


def ensure_limits(limits: LimitOptions) -> dict[str, int]:
    """Create, resize or switch off this host's limits on the Prefect server (0: off). Returns name -> slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    applied = {}
    with get_client(sync_client=True) as client:
        for step in HEAVY_STEPS:
            slots = getattr(limits, step)
            name = f"tag:{heavy_tag(step)}"
            try:
                existing = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                existing = None
            if existing is None and slots > 0:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            elif existing is not None and (existing.limit != max(slots, 1) or existing.active != (slots > 0)):
                update = GlobalConcurrencyLimitUpdate(limit=max(slots, 1), active=slots > 0)
                client.update_global_concurrency_limit(name, update)
            applied[name] = slots
    return applied
