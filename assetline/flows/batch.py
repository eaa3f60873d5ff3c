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

from prefect import tags

from assetline import models
from assetline.assets import discover, identify, is_up_to_date
from assetline.config import Recipe
from assetline.errors import AssetlineError
from assetline.flows._asset import AssetResult
from assetline.flows.asset import ROUTES, process_asset


def failure_message(exc: BaseException, path: Path | None = None) -> str:
    """One line for a failed asset (the table prefixes the asset's path).

    The project's own errors say it all, naming their subject when it is not
    the asset itself (a model, an output folder); others get their type.
    """
    if isinstance(exc, AssetlineError):
        same = path is not None and exc.subject is not None and Path(exc.subject) == path
        return exc.cause if same or exc.subject is None else exc.line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


_api_lock = threading.Lock()
_api_checked = False


def ensure_prefect_api() -> None:
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
        ensure_prefect_api()
        kind = asset.kind if asset else "unidentified"
        run_tags = [kind] + ([f"recipe:{recipe.section_sha256(kind)[:8]}"] if known else [])
        with tags(*run_tags):  # the flow run and its task runs carry the asset kind and the recipe
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
