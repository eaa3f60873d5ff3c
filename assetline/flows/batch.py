"""Running many assets: discover, skip what is up to date, run the rest with a bound.

Used by `assetline run` (and by the scheduled batch). Each asset that needs
work becomes its own flow run, so each is visible, named and failed or
completed on its own in the Prefect UI; one bad file never stops the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from prefect import flow, get_run_logger, tags
from prefect.runtime import deployment

from assetline import models
from assetline.assets import Asset, discover, identify, is_up_to_date
from assetline.config import Recipe
from assetline.recipes import load_recipe, recipe_from_dict
from assetline.errors import AssetlineError
from assetline.flows._asset import AssetResult, awaiting_or_rejected
from assetline.flows._report import failure_message, report_batch
from assetline.flows.asset import ROUTES, process_asset
from assetline.orchestration import give_up_after_crashes
from assetline.storage import clean_stale_staging


@dataclass
class Work:
    """One input that needs a flow run: its path, the root it must stay inside, what identifying it found."""

    path: Path
    root: Path
    asset: Asset | None  # None: it could not be identified; its flow run says why, visibly


@dataclass
class Plan:
    todo: list[Work] = field(default_factory=list)
    finished: list[AssetResult] = field(default_factory=list)  # up to date, or refused at discovery
    order: dict[Path, int] = field(default_factory=dict)  # each input's place in discovery order

    @property
    def total(self) -> int:
        return len(self.todo) + len(self.finished)

    def in_order(self, results: list[AssetResult]) -> list[AssetResult]:
        """`results` as the inputs were found (those refused at discovery first), however they finished."""
        return sorted(results, key=lambda r: self.order.get(Path(r.source).absolute(), -1))


def up_to_date(asset: Asset, out_root: Path, recipe: Recipe) -> AssetResult | None:
    """The skipped result when every output this recipe makes for `asset` is in place and intact."""
    if asset.kind not in ROUTES:
        return None
    wanted = ROUTES[asset.kind].outputs(recipe, asset)
    if wanted and is_up_to_date(asset, out_root, wanted, recipe.section_sha256(asset.kind)):
        return AssetResult.skipped(asset, out_root / asset.folder_name, wanted)
    return awaiting_or_rejected(asset, out_root, recipe.section_sha256(asset.kind))  # a person has it, or said no


def plan_batch(paths: Iterable[Path], out_root: Path, recipe: Recipe) -> Plan:
    """Every input under `paths`, identified once: what needs a run, and what is already done or refused.

    Needs no Prefect server: `assetline run` plans first, so an all-up-to-date
    rerun starts none.
    """
    clean_stale_staging(out_root)  # what a killed run left, even when every asset is now up to date
    files, problems = discover(paths, exclude=[out_root])
    plan = Plan(finished=[AssetResult(p.subject or "?", "failed", message=p.cause) for p in problems],
                order={path.absolute(): i for i, (path, _) in enumerate(files)})  # fmt: skip
    for path, root in files:
        try:
            asset = identify(path, root)
        except AssetlineError:
            plan.todo.append(Work(path, root, None))  # its flow run reports why, so the failure shows in Prefect too
            continue
        done = up_to_date(asset, out_root, recipe)
        if done is not None:
            plan.finished.append(done)
        else:
            plan.todo.append(Work(path, root, asset))
    return plan


WAKE_S = 0.25  # how soon an interrupt is noticed however the kernel delivered it


class Batch:
    """The flow runs of one `assetline run` (or direct batch), `recipe.run.concurrency` at a time.

    Every run it starts carries the tag `batch:<id>`, so an interrupted batch
    can cancel exactly its own runs (`cancel`), and ops can filter by it.
    """

    def __init__(self, out_root: Path, recipe: Recipe) -> None:
        self.out_root, self.recipe = out_root, recipe
        self.tag = f"batch:{uuid.uuid4().hex[:8]}"
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future, Work] = {}

    def run(self, todo: list[Work], on_result: Callable[[AssetResult], None] = lambda r: None) -> list[AssetResult]:
        """One flow run per item; results in `todo` order. One bad file (or a bug) fails only its own asset."""
        if not todo:
            return []
        models.set_parallel_assets(min(self.recipe.run.concurrency, len(todo)))
        self._pool = ThreadPoolExecutor(max_workers=self.recipe.run.concurrency, thread_name_prefix="asset")
        self._running = {self._pool.submit(self._one, w): w for w in todo}
        results: dict[int, AssetResult] = {}
        while self._running:
            # A timed wait, not as_completed's endless one: a SIGTERM the kernel hands to another thread
            # runs its Python handler only when this thread next runs, so it must wake up now and then.
            finished, _ = wait(list(self._running), timeout=WAKE_S, return_when=FIRST_COMPLETED)
            for fut in finished:
                work = self._running.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # a bug, not bad input: still only this asset fails
                    result = AssetResult(str(work.path), "failed", message=failure_message(exc, work.path))
                results[id(work)] = result
                on_result(result)
        self._pool.shutdown()
        return [results[id(w)] for w in todo]

    def _one(self, work: Work) -> AssetResult:
        start = time.perf_counter()
        with tags(self.tag):
            state = process_asset(
                str(work.path.absolute()), str(self.out_root), self.recipe.model_dump(mode="json"),
                work.asset.sha256 if work.asset else None, inbox=str(work.root),
                fingerprint=work.asset.fingerprint if work.asset else None, return_state=True,
            )  # fmt: skip
        if state.is_completed():
            result = state.result()
        else:
            exc = state.result(raise_on_failure=False)
            message = failure_message(exc, work.path) if isinstance(exc, BaseException) else (state.message or state.name)
            result = AssetResult(str(work.path), "failed", message=message)
        result.seconds = time.perf_counter() - start
        return result

    def in_flight(self) -> list[Path]:
        return [w.path for f, w in list(self._running.items()) if not f.done()]

    def cancel(self, reason: str, timeout: float = 3.0) -> int:
        """Stop starting runs and mark this batch's unfinished runs Cancelled (best effort, within `timeout`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateType, FlowRunFilterTags
        from prefect.client.schemas.objects import StateType
        from prefect.states import Cancelled

        unfinished = [StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED]
        cancelled = 0
        try:
            with get_client(sync_client=True, httpx_settings={"timeout": timeout}) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[self.tag]), state=dict(type=FlowRunFilterStateType(any_=unfinished))))  # fmt: skip
                for run in runs:
                    client.set_flow_run_state(run.id, Cancelled(message=reason), force=True)
                    cancelled += 1
        except Exception:  # the server may be gone already: the runs stay Running there, the files are safe
            pass
        return cancelled


_api_lock = threading.Lock()
_api_checked = False


def ensure_prefect_api() -> None:
    """Reach the Prefect API once, from one thread, before flow runs start (a clear error when it is not there)."""
    global _api_checked
    with _api_lock:
        if _api_checked:
            return
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.api_healthcheck()
        _api_checked = True


def run_batch(
    paths: list[Path],
    out_root: Path,
    recipe: Recipe,
    on_result: Callable[[AssetResult], None] = lambda r: None,
    on_plan: Callable[[int], None] = lambda n: None,
) -> list[AssetResult]:
    """Process every asset under `paths` into `out_root` against the configured server; one result per input.

    `on_plan` hears how many results to expect, `on_result` each one as it finishes.
    """
    plan = plan_batch(paths, out_root, recipe)
    on_plan(plan.total)
    for r in plan.finished:
        on_result(r)
    if plan.todo:
        ensure_prefect_api()
    return plan.in_order(plan.finished + Batch(out_root, recipe).run(plan.todo, on_result))


def unique_content(todo: list[Work]) -> tuple[list[Work], list[AssetResult]]:
    """The first input of each content (by sha256); the others are reported as duplicates, not run."""
    first: dict[str, Path] = {}
    keep, duplicates = [], []
    for work in todo:
        sha = work.asset.sha256 if work.asset else None
        if sha is not None and sha in first:
            duplicates.append(AssetResult(str(work.path), "skipped", sha256=sha, message=f"same content as {first[sha].name}"))
            continue
        if sha is not None:
            first[sha] = work.path
        keep.append(work)  # unidentified ones too: their run reports why
    return keep, duplicates


def batch_run_name() -> str:
    from datetime import datetime, timezone

    from prefect.runtime import flow_run

    folder = Path(str(flow_run.parameters.get("inbox") or "")).name or "inbox"
    return f"batch {folder} · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


PROCESS_DEPLOYMENT = "process-asset/process-asset"
RETRY_GRACE_S = 30  # how long a Crashed run may take to be put back by the crash-retry automation


def fan_out(todo: list[Work], inbox: Path, out_root: Path, recipe: Recipe, recipe_param: dict | None) -> list[AssetResult]:
    """One `process-asset` deployment run per asset that needs work, then wait for them all.

    Each is a run of its own, taken by whichever runner or worker has a slot:
    cancellable, retried and reported like an arrival, and spread over the
    machines of a work pool. Up-to-date assets start no run. Each run's
    idempotency key is this batch run's id, the content's sha256 and the recipe
    hash: a batch that is itself retried (its process died) finds the runs it
    already started instead of starting each asset twice.
    """
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    started: dict[UUID, Path] = {}
    for work in todo:
        parameters = {"path": work.path.relative_to(inbox).as_posix(), "sha256": work.asset.sha256 if work.asset else None,
                      "fingerprint": work.asset.fingerprint if work.asset else None,
                      "out": str(out_root), "recipe": recipe_param, "inbox": str(inbox)}  # fmt: skip
        key = None
        if work.asset is not None:
            key = f"{flow_run.get_id()}:{work.asset.sha256}:{recipe.section_sha256(work.asset.kind)}"
        # Not linked as a subflow: Prefect cannot suspend a subflow, and an asset held for review suspends its run.
        run = run_deployment(PROCESS_DEPLOYMENT, parameters=parameters, timeout=0, tags=["batch"], idempotency_key=key,
                             as_subflow=False)  # fmt: skip
        started[run.id] = work.path
    results = []
    for run in _wait_all(list(started), recipe.run.crash_retries):
        path = started[run.id]
        seconds = run.total_run_time.total_seconds() if run.total_run_time else 0.0
        if run.state_type.value == "COMPLETED":
            result = AssetResult(str(path), "done", message=f"run {run.name}")
        elif run.state is not None and run.state.is_paused():  # held for review: the run waits for a person, not us
            result = AssetResult(str(path), "review", message=f"run {run.name} awaits review")
        else:
            message = (run.state.message if run.state else "") or run.state_type.value.lower()
            result = AssetResult(str(path), "failed", message=message.removeprefix("Flow run encountered an exception: "))
        result.seconds = seconds
        results.append(result)
    return results


PAUSE_CHECK_S = 5  # how often a run is looked at for a suspension (review): suspending emits no final state


def _wait_all(ids: list[UUID], crash_retries: int) -> list:
    """The runs once each has settled: final and not a crash the crash-retry automation is about to put back,
    or suspended for review (a batch must not wait for a person)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.flow_runs import wait_for_flow_run

    async def suspended(client, run_id: UUID):
        while True:
            await asyncio.sleep(PAUSE_CHECK_S)
            run = await client.read_flow_run(run_id)
            if run.state is not None and run.state.is_paused():
                return run

    async def final_or_suspended(client, run_id: UUID):
        waits = [asyncio.ensure_future(wait_for_flow_run(run_id, timeout=None, client=client)),  # Prefect's events
                 asyncio.ensure_future(suspended(client, run_id))]  # fmt: skip
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for other in pending:
            other.cancel()
        return done.pop().result()

    async def settled(client, run_id: UUID):
        for _ in range(crash_retries + 1):
            run = await final_or_suspended(client, run_id)
            if run.state is not None and run.state.is_paused():
                return run
            if run.state_type.value != "CRASHED":
                return run
            for _ in range(RETRY_GRACE_S):  # the automation reacts within a second or two
                await asyncio.sleep(1)
                run = await client.read_flow_run(run_id)
                if not run.state.is_final():
                    break
            else:
                return run  # nobody put it back: the crash stands
        return await final_or_suspended(client, run_id)

    async def main():
        async with get_client() as client:
            return await asyncio.gather(*(settled(client, i) for i in ids))

    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(main()) if ids else []


@flow(name="batch-inbox", flow_run_name=batch_run_name, log_prints=True, persist_result=False)
def batch_inbox(inbox: str, out: str, recipe: dict | None = None) -> dict:
    """Process everything in the inbox that is not processed yet (scheduled nightly; or Run from the UI).

    Each asset that needs work is its own `process-asset` flow run (a deployment
    run when served or deployed, so any runner or worker with a slot takes it);
    files with the same content are processed once; a table artifact lists
    every asset with its state and time.
    """
    logger = get_run_logger()
    settings = recipe_from_dict(recipe) if recipe is not None else load_recipe(None)  # $ASSETLINE_RECIPE, or defaults
    give_up_after_crashes(settings.run.crash_retries)  # a batch whose worker was lost is re-run too, this often
    root, out_root = Path(inbox).absolute(), Path(out)
    plan = plan_batch([root], out_root, settings)
    todo, duplicates = unique_content(plan.todo)
    if deployment.get_id():  # served or deployed: each asset is a process-asset run of its own
        results = fan_out(todo, root, out_root, settings, recipe)
    else:  # called directly: in this process, as `assetline run` does
        results = Batch(out_root, settings).run(todo)
    results = plan.finished + results + duplicates
    report_batch(results)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    logger.info("%s: %d done, %d up to date or duplicate, %d failed", inbox, counts["done"], counts["skipped"], counts["failed"])
    return counts
