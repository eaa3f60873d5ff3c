"""How steps run under Prefect: retries for transient failures only, and machine-wide slots for heavy steps.

One mechanism for every flow: `configured(recipe, *steps)` returns the step
tasks with the recipe's retry policy and, for the heavy steps, this host's
slot held around the step's body (`assetline.slots`: an OS lock the kernel
frees when its holder dies, however it dies).

Retries: a bad input, a missing model, a full disk or a recipe error fails at
once (retrying cannot help, and would hide the cause); an interrupted read on
a network share, a timeout, a dropped connection are retried with doubling
waits.

Slots: at most `run.limits.<step>` of each heavy step at once on a machine,
across every run there. Each machine has its own CPU to protect, so the slot
is local to it; why not Prefect's global concurrency limits: see slots.py.
Heavy task runs carry the tag `heavy:<step>@HOST`, for filtering in the UI
(no limit is attached to it).
"""

from __future__ import annotations

import errno
import functools
import logging
from typing import Any

from assetline.config import Recipe
from assetline.errors import AssetlineError
from assetline.slots import HEAVY_STEPS, heavy_slot, host

log = logging.getLogger(__name__)

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


def heavy_tag(step: str) -> str:
    return f"heavy:{step}@{host()}"


def configured(recipe: Recipe, *steps: Any) -> Any:
    """The step tasks with this recipe's retries and, for heavy steps, their machine slot held around the body."""
    from prefect.tasks import exponential_backoff

    retries = recipe.run.retries
    delays = exponential_backoff(backoff_factor=retries.delay_seconds)(retries.attempts) if retries.attempts else 0
    out = []
    for step in steps:
        tags = set(step.tags)
        slots = getattr(recipe.run.limits, step.name, 0) if step.name in HEAVY_STEPS else 0
        if slots > 0:
            tags.add(heavy_tag(step.name))
        task = step.with_options(
            retries=retries.attempts,
            retry_delay_seconds=delays,
            retry_jitter_factor=0.2 if retries.attempts else None,
            retry_condition_fn=retry_if_transient,
            tags=tags,
        )
        if slots > 0:
            task.fn = _holding_slot(task.fn, step.name, slots)
        out.append(task)
    return out[0] if len(out) == 1 else out


def _holding_slot(fn: Any, step: str, slots: int) -> Any:
    """`fn`, run while holding one of this machine's `slots` slots for `step` (each retry takes one anew)."""

    @functools.wraps(fn)
    def holding(*args: Any, **kwargs: Any) -> Any:
        from prefect import get_run_logger

        try:
            logger = get_run_logger()
        except Exception:  # called outside a run (task.fn in a test)
            logger = log
        with heavy_slot(step, slots, logger=logger):
            return fn(*args, **kwargs)

    return holding


def in_work_pool_run() -> bool:
    """Whether this is a flow run from a work pool: a worker's, possibly one of many machines sharing the outputs.

    Such a run holds its asset's slot on the server (`asset_lease`) and signs
    only with a key that was handed to it (the cluster's one key), never one it
    would make itself.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    return bool(run is not None and run.work_pool_name)


# Crashed runs come back. A run whose process died (SIGKILL, the OOM killer, a lost machine)
# ends Crashed: proposed by the runner or worker that saw its process exit, or, when that
# died too (a lost machine, a killed worker), by the zombie automation below once the run's
# heartbeats stop. One automation on the server puts every crashed process-asset or
# batch-inbox run back to AwaitingRetry (the same run, so the UI shows it as a retry of that
# asset or batch, run_count counting up), whoever noticed the crash. A batch is covered too:
# the catch-up batch after a server restart runs on some worker, and a lost worker must not
# leave it Running for good; its re-run is the same run, so its fan-out's idempotency keys
# find the asset runs it had already made. The automation can't count, so the run counts
# itself: past `run.crash_retries` it ends Failed at once, naming the crashes. The per-asset
# lock makes a re-run wait for any twin and then find the asset up to date: nothing is
# processed to completion twice.

CRASH_AUTOMATION = "assetline: re-run crashed runs"
ZOMBIE_AUTOMATION = "assetline: mark runs Crashed when their heartbeats stop"
# What these were called when they covered process-asset runs only: replaced, not kept beside.
FORMER_AUTOMATIONS = ("assetline: re-run crashed process-asset runs",
                      "assetline: mark process-asset runs Crashed when their heartbeats stop")  # fmt: skip
RECOVERED = ("process-asset", "batch-inbox")  # the deployments, and their flows, whose crashed runs come back
CRASHED_EVENT = "prefect.flow-run.Crashed"
# Flow-run heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY; Prefect's minimum is 30 s, its default
# 180 s): every process-asset run must send them this often, or the zombie automation, which
# waits ZOMBIE_SECONDS (three beats) for the next sign of life, would take a live run for dead.
HEARTBEAT_SECONDS = 30
ZOMBIE_SECONDS = 90
# Signs of life, and the states after which a silent run is no zombie (it ended, was
# suspended for review, or is being cancelled).
ALIVE_EVENTS = {"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat"}
SETTLED_EVENTS = {f"prefect.flow-run.{state}" for state in
                  ("Completed", "Failed", "Crashed", "Cancelled", "Cancelling", "Paused", "Suspended")}  # fmt: skip


class CrashedTooOften(AssetlineError):
    """A run crashed more often than `run.crash_retries` allows: failed, not retried again."""


def crash_retry_automation(deployment_names: tuple[str, ...] = RECOVERED):
    """The automation: any run of `deployment_names` that crashes is scheduled again (AwaitingRetry)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=CRASH_AUTOMATION,
        description="A process-asset or batch-inbox run whose process died is run again (bounded by the recipe's "
                    "run.crash_retries, which the run checks when it starts).",  # fmt: skip
        trigger=EventTrigger(
            expect={CRASHED_EVENT},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.name": list(deployment_names)},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                    message="re-run after a crash (its process died)")],  # fmt: skip
    )


def zombie_automation(flow_names: tuple[str, ...] = RECOVERED):
    """The automation: a deployed run of `flow_names` silent for ZOMBIE_SECONDS after a sign of life is marked Crashed.

    Prefect's own zombie detection (docs: "detect zombie flows"), a proactive trigger,
    widened to cover a run whose process died before its first heartbeat (after Pending
    or Running). Its heartbeat events name the deployment by id only, so runs are
    matched by flow name, and by having a deployment at all: `assetline run`'s own runs
    are no business of it.
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=ZOMBIE_AUTOMATION,
        description=f"A {' or '.join(flow_names)} run with no heartbeat for {ZOMBIE_SECONDS} s (its worker or machine is gone) "
                    "is marked Crashed; the crash-retry automation then runs it again.",  # fmt: skip
        trigger=EventTrigger(
            after=ALIVE_EVENTS,
            expect=ALIVE_EVENTS | SETTLED_EVENTS,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[{"prefect.resource.role": "flow", "prefect.resource.name": list(flow_names)},
                           {"prefect.resource.role": "deployment"}],  # fmt: skip
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=ZOMBIE_SECONDS),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {ZOMBIE_SECONDS} s: its process or machine is gone")],  # fmt: skip
    )


def ensure_automations() -> None:
    """Create, or bring up to date, the zombie and crash-retry automations on the server (idempotent: one each, by name)."""
    from prefect.automations import Automation

    for former in FORMER_AUTOMATIONS:
        try:
            Automation.read(name=former).delete()
        except ValueError:
            pass
    for wanted in (zombie_automation(), crash_retry_automation()):
        try:
            existing = Automation.read(name=wanted.name)
        except ValueError:
            existing = None
        if existing is None:
            wanted.create()
        elif (existing.trigger, existing.actions, existing.enabled) != (wanted.trigger, wanted.actions, True):
            wanted.id = existing.id
            wanted.update()


ensure_crash_retries = ensure_automations  # the name callers used before the zombie automation joined it


def give_up_after_crashes(crash_retries: int) -> None:
    """At the start of a run: fail for good, with the reason, once it has crashed more than `crash_retries` times."""
    from prefect.runtime import flow_run

    attempts = flow_run.run_count or 1
    if attempts <= 1:
        return
    crashes = _crash_messages(flow_run.id)
    if len(crashes) > crash_retries:
        last = crashes[-1] or "its process died"
        raise CrashedTooOften(None, f"crashed {len(crashes)} times (run.crash_retries is {crash_retries}): "
                                    f"not retried again; last: {last}")  # fmt: skip


def _crash_messages(flow_run_id: str | None) -> list[str]:
    """The messages of this run's Crashed states, oldest first."""
    if not flow_run_id:
        return []
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return [s.message or "" for s in sorted(states, key=lambda s: s.timestamp) if s.type.value == "CRASHED"]
