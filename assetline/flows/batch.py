"""Running many assets: discover, skip what is up to date, run the rest with a bound.

Used by `assetline run` (and by the scheduled batch). Each asset that needs
work becomes its own flow run, so each is visible, named and failed or
completed on its own in the Prefect UI; one bad file never stops the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import deployment

from assetline import models
from assetline.assets import discover, identify, is_up_to_date
from assetline.config import LimitOptions, Recipe, load_recipe, recipe_from_dict
from assetline.errors import AssetlineError
from assetline.flows._asset import AssetResult
from assetline.flows._report import failure_message, report_batch
from assetline.flows.asset import ROUTES, process_asset
from assetline.orchestration import ensure_limits
from assetline.storage import clean_stale_staging


_api_lock = threading.Lock()
_api_checked = False


def ensure_prefect_api(limits: LimitOptions | None = None) -> None:
    """Reach the Prefect API once, from one thread, before flow runs start.

    With no PREFECT_API_URL, Prefect starts a temporary server on first use;
    its start is not thread-safe, and two assets starting at once would each
    start one and leave one running after exit. Starting it here, under a
    lock, means one server, stopped at exit. Skipped assets never get here,
    so an all-up-to-date rerun starts no server at all.
    """
    global _api_checked
    with _api_lock:
        if _api_checked:
            return
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.api_healthcheck()
        if limits is not None:
            ensure_limits(limits)  # this host's slots for the heavy steps
        _api_checked = True


def process_one(path: Path, out_root: Path, recipe: Recipe) -> AssetResult:
    """Run one asset through its flow, or report it up to date without starting a flow run."""
    start = time.perf_counter()
    try:
        asset = identify(path)
    except AssetlineError:
        asset = None  # the flow run reports the cause, so the failure shows in Prefect too
    known = asset is not None and asset.kind in ROUTES
    wanted = ROUTES[asset.kind].outputs(recipe, asset) if known else []
    if known and is_up_to_date(asset, out_root, wanted, recipe.section_sha256(asset.kind)):
        result = AssetResult.skipped(asset, out_root / asset.folder_name, wanted)
    else:
        ensure_prefect_api(recipe.run.limits)
        state = process_asset(
            str(path), str(out_root), recipe.model_dump(mode="json"), asset.sha256 if asset else None,
            return_state=True,
        )  # fmt: skip
        if state.is_completed():
            result = state.result()
        else:
            exc = state.result(raise_on_failure=False)
            message = failure_message(exc, path) if isinstance(exc, BaseException) else (state.message or state.name)
            result = AssetResult(str(path), "failed", message=message)
    result.seconds = time.perf_counter() - start
    return result


def run_batch(
    paths: list[Path],
    out_root: Path,
    recipe: Recipe,
    on_result: Callable[[AssetResult], None] = lambda r: None,
    on_plan: Callable[[int], None] = lambda n: None,
) -> list[AssetResult]:
    """Process every asset under `paths` into `out_root`; returns one result per input, in input order.

    `on_plan` hears how many results to expect, `on_result` each one as it finishes.
    """
    clean_stale_staging(out_root)  # what a killed run left, even when every asset is now up to date
    files, problems = discover(paths, exclude=[out_root])
    on_plan(len(files) + len(problems))
    models.set_parallel_assets(min(recipe.run.concurrency, max(1, len(files))))
    results: dict[Path, AssetResult] = {}
    for problem in problems:
        r = AssetResult(problem.subject or "?", "failed", message=problem.cause)
        on_result(r)
    with ThreadPoolExecutor(max_workers=recipe.run.concurrency, thread_name_prefix="asset") as pool:
        futures = {pool.submit(process_one, p, out_root, recipe): p for p in files}
        for fut in as_completed(futures):
            path = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # a bug, not bad input: still only this asset fails
                result = AssetResult(str(path), "failed", message=failure_message(exc, path))
            results[path] = result
            on_result(result)
    failed_discovery = [AssetResult(p.subject or "?", "failed", message=p.cause) for p in problems]
    return failed_discovery + [results[p] for p in files]


def unique_content(files: list[Path]) -> tuple[list[Path], list[AssetResult]]:
    """The first file of each content (by sha256); the others are reported as duplicates, not run."""
    first: dict[str, Path] = {}
    keep, duplicates = [], []
    for path in files:
        try:
            sha = identify(path).sha256
        except AssetlineError:
            keep.append(path)  # its flow run reports why
            continue
        if sha in first:
            duplicates.append(AssetResult(str(path), "skipped", sha256=sha, message=f"same content as {first[sha].name}"))
        else:
            first[sha] = path
            keep.append(path)
    return keep, duplicates


def batch_run_name() -> str:
    from datetime import datetime, timezone

    from prefect.runtime import flow_run

    folder = Path(str(flow_run.parameters.get("inbox") or "")).name or "inbox"
    return f"batch {folder} · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


PROCESS_DEPLOYMENT = "process-asset/process-asset"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def fan_out(files: list[Path], inbox: Path, out_root: Path, recipe: Recipe, recipe_param: dict | None) -> list[AssetResult]:
    """One `process-asset` deployment run per asset that needs work, then wait for them all.

    Each is a run of its own, taken by whichever runner or worker has a slot:
    cancellable, retried and reported like an arrival, and spread over the
    machines of a work pool. Up-to-date assets start no run.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    results: list[AssetResult] = []
    started: dict[str, Path] = {}
    for path in files:
        try:
            asset = identify(path)
        except AssetlineError:
            asset = None  # its run reports why
        if asset is not None and asset.kind in ROUTES:
            wanted = ROUTES[asset.kind].outputs(recipe, asset)
            if is_up_to_date(asset, out_root, wanted, recipe.section_sha256(asset.kind)):
                results.append(AssetResult.skipped(asset, out_root / asset.folder_name, wanted))
                continue
        parameters = {"path": path.relative_to(inbox).as_posix(), "sha256": asset.sha256 if asset else None,
                      "out": str(out_root), "recipe": recipe_param, "inbox": str(inbox)}  # fmt: skip
        run = run_deployment(PROCESS_DEPLOYMENT, parameters=parameters, timeout=0, tags=["batch"])
        started[str(run.id)] = path
    runs = {}
    with get_client(sync_client=True) as client:
        while started:
            ids = [UUID(i) for i in started]
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)):
                if run.state_type is not None and run.state_type.value in FINAL:
                    runs[str(run.id)] = run
            for done in set(runs) & set(started):
                path, run = started.pop(done), runs[done]
                seconds = run.total_run_time.total_seconds() if run.total_run_time else 0.0
                if run.state_type.value == "COMPLETED":
                    result = AssetResult(str(path), "done", message=f"run {run.name}")
                else:
                    message = (run.state.message if run.state else "") or run.state_type.value.lower()
                    result = AssetResult(str(path), "failed", message=message.removeprefix("Flow run encountered an exception: "))
                result.seconds = seconds
                results.append(result)
            if started:
                time.sleep(2)
    return results


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
    root, out_root = Path(inbox), Path(out)
    files, problems = discover([root], exclude=[out_root])
    files, duplicates = unique_content(files)
    if deployment.get_id():  # served or deployed: each asset is a process-asset run of its own
        results = fan_out(files, root.resolve(), out_root, settings, recipe) + duplicates
    else:  # called directly: in this process, as `assetline run` does
        results = run_batch(files, out_root, settings) + duplicates
    results += [AssetResult(p.subject or "?", "failed", message=p.cause) for p in problems]
    report_batch(results)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    logger.info("%s: %d done, %d up to date or duplicate, %d failed", inbox, counts["done"], counts["skipped"], counts["failed"])
    return counts
