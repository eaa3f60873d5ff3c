"""`assetline run PATHS...`: process files and folders now, with a progress bar, then a table of outputs.

Plans first (no server needed when everything is up to date), then runs what
needs work against a Prefect server this command owns; SIGINT or SIGTERM
cancels the runs in flight and exits within seconds (`Interrupted`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assetline.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    OutOption,
    RecipeOption,
    SetOption,
    err,
    load_recipe_or_exit,
    out,
    require_models,
)

if TYPE_CHECKING:
    from assetline.config import Recipe
    from assetline.flows._asset import AssetResult


def run(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively).")],
    out_dir: OutOption = Path("out"),
    recipe: RecipeOption = None,
    set_: SetOption = None,
    retry_rejected: Annotated[bool, typer.Option("--retry-rejected", help="Offer assets a reviewer rejected again (same input and recipe).")] = False,
) -> None:
    """Process files and folders now; prints a table of outputs (assets held for review end "awaiting review")."""
    settings = load_recipe_or_exit(recipe, set_)
    require_models(settings)
    results = run_with_progress(paths, out_dir, settings, retry_rejected=retry_rejected)
    print_results(results)
    raise typer.Exit(EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK)


def run_with_progress(paths: list[Path], out_dir: Path, settings: Recipe, retry_rejected: bool = False) -> list[AssetResult]:
    """Plan (no server needed), then run what needs work against a Prefect server this command owns.

    With no PREFECT_API_URL the server is a child of this process on a free
    loopback port, stopped with it (unused, when the plan finds nothing to do);
    it dies with this process even on SIGKILL, as every ffmpeg it starts does
    (`assetline.lifetime`). SIGINT or SIGTERM: the runs in flight are marked
    Cancelled, one line says which assets they were, and the command exits
    within seconds; nothing of theirs was published, so the next run picks them up.

    The server is started first of all, before the flows are imported and the
    inputs planned, and the models load while it comes up: its start (its own
    imports, about 5 s on 2 cores) overlaps the rest instead of following it.
    A plan with nothing to do stops it unused.
    """
    server = _start_server()
    try:
        return _run(paths, out_dir, settings, retry_rejected, server)
    finally:
        if server is not None:
            server.stop(hurry=True)  # unused (nothing to do, or a failure first); a no-op if stopped already


def _start_server():
    """A local server starting now, for this command alone; None when PREFECT_API_URL names one."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    from assetline.server import LocalServer

    return LocalServer(port=0, ui=False)


def _run(paths: list[Path], out_dir: Path, settings: Recipe, retry_rejected: bool, server) -> list[AssetResult]:
    import threading

    from assetline import models
    from assetline.flows.batch import Batch, plan_batch
    from assetline.server import prefect_server
    from assetline.tasks.warm import warm_up

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with _interruptible(), Progress(*columns, console=err, transient=True) as progress:
        bar = progress.add_task("assets", total=None)

        def on_result(result) -> None:
            progress.advance(bar)
            if result.status == "failed":
                progress.console.print(f"[red]failed[/red] {result.source}: {result.message}", highlight=False)

        stopped: list[Path] = []
        try:
            plan = plan_batch(paths, out_dir, settings)
            if retry_rejected and any(r.status == "rejected" for r in plan.finished):
                from assetline.assets import output_folder_name
                from assetline.review.held import forget_rejection

                for r in plan.finished:
                    if r.status == "rejected":
                        forget_rejection(out_dir, output_folder_name(Path(r.source), r.sha256))
                plan = plan_batch(paths, out_dir, settings)  # offered again: planned as new
            progress.update(bar, total=plan.total)
            for result in plan.finished:
                on_result(result)
            if not plan.todo:
                return plan.in_order(plan.finished)  # everything up to date: the server is stopped unused
            batch = Batch(out_dir, settings)
            models.set_parallel_assets(min(settings.run.concurrency, len(plan.todo)))  # as the batch will: same sessions
            kinds = {w.asset.kind for w in plan.todo if w.asset is not None}
            threading.Thread(target=warm_up, args=(settings, kinds), name="warm-up", daemon=True).start()
            # Heartbeats: none to the command's own server (it lives as long as this process); a configured one keeps them.
            with prefect_server(started=server, heartbeats=False):
                try:
                    return plan.in_order(plan.finished + batch.run(plan.todo, on_result))
                except Interrupted as exc:
                    stopped = batch.in_flight()
                    batch.cancel(f"assetline run was interrupted ({exc.signame})")
                    raise
        except Interrupted as exc:
            progress.stop()
            names = ", ".join(p.name for p in stopped[:5]) + (f" and {len(stopped) - 5} more" if len(stopped) > 5 else "")
            err.print(f"cancelled ({exc.signame}): {len(stopped)} asset(s) in flight stopped"
                      + (f" ({names})" if stopped else "") + "; nothing of theirs was published: run again to pick them up",
                      highlight=False)  # fmt: skip
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + exc.signum)  # the asset threads are inside native code: don't wait for them


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop, quickly and tidily."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum, self.signame = signum, signal.Signals(signum).name
        super().__init__(self.signame)


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; a second one exits at once."""
    import signal

    def first(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda n, f: os._exit(128 + n))
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_results(results: list[AssetResult]) -> None:
    """The table of outputs (one row per asset) and the one-line count."""
    table = Table(title="assetline run", show_lines=False)
    for col in ("asset", "status", "outputs", "time"):
        table.add_column(col, overflow="fold")
    style = {"done": "green", "skipped": "cyan", "failed": "red", "review": "yellow", "rejected": "magenta"}
    shown = {"review": "awaiting review"}
    for r in results:
        if r.status == "failed":
            where = r.message
        else:  # the outputs, then any note (e.g. a clip without sound: transcription skipped)
            where = "\n".join([str(Path(r.out_dir) / name) for name in r.outputs] + ([r.message] if r.message else []))
        status = shown.get(r.status, r.status)
        took = "\n".join([f"{r.seconds:.1f}s", *(f"{g} at {t:.1f}s" for g, t in r.groups.items())])  # each group as it went out
        table.add_row(Path(r.source).name, f"[{style.get(r.status, 'white')}]{status}[/]", where, took)
    out.print(table)
    counts = {s: sum(r.status == s for r in results) for s in style}
    held = f", {counts['review']} awaiting review" if counts["review"] else ""
    refused = f", {counts['rejected']} rejected earlier" if counts["rejected"] else ""
    out.print(f"{counts['done']} done, {counts['skipped']} up to date, {counts['failed']} failed{held}{refused}")
