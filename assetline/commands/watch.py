"""`assetline watch`: only announce arrivals in an inbox as events to PREFECT_API_URL; workers elsewhere run them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from assetline.commands._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    SetOption,
    fail,
    load_recipe_or_exit,
    log_to_console,
    out,
    wait_for_interrupt,
)


def watch(
    inbox: Annotated[Path, typer.Option("--inbox", "-i", help="Folder to watch.")] = Path("inbox"),
    recipe: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Recipe YAML (its inbox section applies).")] = None,
    set_: SetOption = None,
    exclude: Annotated[Optional[list[Path]], typer.Option("--exclude", help="A folder inside the inbox not to watch (e.g. the output root).")] = None,
) -> None:
    """Only announce arrivals (events) to the server at PREFECT_API_URL; workers elsewhere run them.

    At start it also makes sure the server has the zombie and crash-retry automations
    (`assetline.orchestration.ensure_automations`): one watcher per cluster, so a run
    whose worker dies is found and run again without another command. When the server
    comes back after not answering, it starts one catch-up batch-inbox run
    (`assetline.serve.catch_up_after_outages`): what the server lost is processed.
    """
    import threading

    from assetline.inbox import InboxWatcher
    from assetline.orchestration import ensure_automations
    from assetline.serve import catch_up_after_outages

    settings = load_recipe_or_exit(recipe, set_)
    if not os.environ.get("PREFECT_API_URL"):
        fail("set PREFECT_API_URL to the server that runs the deployments (or use `assetline serve`)", EXIT_USAGE)
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{inbox}: cannot use as the inbox ({exc.strerror})", EXIT_USAGE)
    log_to_console()
    try:
        ensure_automations()
    except Exception as exc:  # an unreachable or refusing server: say which, and why
        fail(f"{os.environ['PREFECT_API_URL']}: cannot set up the crash automations ({type(exc).__name__}: {exc})", EXIT_FAILED)
    watcher = InboxWatcher(inbox, settings.inbox, exclude=exclude or [])
    watcher.start()
    stop = threading.Event()
    threading.Thread(target=catch_up_after_outages, args=(stop,), name="catch-up", daemon=True).start()
    out.print(f"watching {inbox.resolve()}: announcing arrivals to {os.environ['PREFECT_API_URL']}", highlight=False)
    try:
        wait_for_interrupt()
    finally:
        stop.set()
        watcher.stop()
        _flush_events()


def _flush_events() -> None:
    """Send the arrivals still queued before exiting; a server already gone is no reason to fail the stop."""
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)
    except Exception:
        pass
