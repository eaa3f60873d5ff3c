"""`assetline serve`: the inbox watcher plus two served deployments, on a local or configured Prefect server.

    file lands in INBOX ──watcher──▶ event assetline.asset.arrived {path, sha256}
                                          │  (or any system: POST /api/events)
                                          ▼
                        trigger on deployment process-asset/process-asset
                                          ▼
        Runner (this process) starts the flow run in a child process ──▶ OUT/<stem>-<sha8>/

    cron (inbox.batch_cron) ──▶ batch-inbox/batch-inbox: everything in INBOX not yet processed

Both deployments can also be started from the UI's Run button. On start, one
batch-inbox run catches up with whatever arrived while nothing was serving.
SIGINT or SIGTERM: the watcher stops, the runner cancels runs in flight (they
end Cancelled, and the next batch run picks their files up again), the local
server stops; no process is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from assetline.config import Recipe
from assetline.inbox import ARRIVED, RESOURCE_PREFIX, InboxWatcher

log = logging.getLogger("assetline.serve")

PROCESS_DEPLOYMENT = "process-asset/process-asset"
BATCH_DEPLOYMENT = "batch-inbox/batch-inbox"
RUNNER_POLL_SECONDS = 1.0  # how often the runner asks for due flow runs (Prefect's default is 10 s)


@dataclass
class ServeSettings:
    inbox: Path
    out: Path
    recipe: Recipe
    catch_up: bool = True  # run batch-inbox once at start


def arrival_trigger():
    """The trigger that turns an `assetline.asset.arrived` event into a process-asset run."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="asset arrived in the inbox",
        description="An assetline.asset.arrived event (from the watcher, or POST /api/events) starts one run.",
        expect={ARRIVED},
        match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
        # .get: an event without a path still becomes a run, refused there with a clear message
        parameters={"path": "{{ event.payload.get('path', '') }}", "sha256": "{{ event.payload.get('sha256') }}"},
    )


def deployments(settings: ServeSettings) -> list:
    """The two deployments, bound to this inbox, output root and recipe."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from assetline.flows.asset import process_asset
    from assetline.flows.batch import batch_inbox

    recipe = settings.recipe.model_dump(mode="json")
    inbox, out = str(settings.inbox), str(settings.out)
    process = process_asset.to_deployment(
        name="process-asset",
        description=f"One asset from {inbox} into {out}; triggered by {ARRIVED} events.",
        triggers=[arrival_trigger()],
        parameters={"out": out, "recipe": recipe, "inbox": inbox},
        tags=["assetline", "inbox"],
        entrypoint_type=EntrypointType.MODULE_PATH,
        paused=False,
    )
    batch = batch_inbox.to_deployment(
        name="batch-inbox",
        description=f"Everything in {inbox} not yet processed, into {out}.",
        # the recipe's time zone, so "0 2 * * *" means 02:00 where the facility is
        schedules=[Cron(settings.recipe.inbox.batch_cron, timezone=settings.recipe.inbox.timezone)],
        parameters={"inbox": inbox, "out": out, "recipe": recipe},
        tags=["assetline", "batch"],
        entrypoint_type=EntrypointType.MODULE_PATH,
        paused=False,
    )
    return [process, batch]


def catch_up_after_outages(stop: threading.Event, every: float = 2.0) -> None:
    """Until `stop` is set: each time the server answers again after not answering, start one catch-up batch run.

    A server killed or restarted loses the arrivals it had taken but not yet
    turned into runs (its event queue is in memory), and Prefect's events client
    drops what the watcher announces while the server is down: the batch-inbox
    run finds every file in the inbox not yet processed. `assetline watch` runs it.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    down = False
    while not stop.wait(every):
        # A new client each time: one that has connected before retries refused connections
        # for a minute, and would sleep through a restart without noticing it.
        with get_client(sync_client=True) as client:
            answered = client.api_healthcheck() is None  # else the exception it met
        if not answered:
            if not down:
                log.warning("the Prefect server does not answer: the inbox is caught up when it does")
            down = True
        elif down:
            try:
                run = run_deployment(BATCH_DEPLOYMENT, timeout=0, tags=["catch-up"])
            except Exception as exc:  # not quite back yet: try again on the next look
                log.warning("catch-up batch not started yet: %s", exc)
                continue
            down = False
            log.info("the Prefect server answers again: catch-up batch %s started", run.name)


def serve(settings: ServeSettings, on_ready=lambda: None) -> None:
    """Register the deployments, start the watcher and the runner; return after SIGINT/SIGTERM."""
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from assetline.orchestration import HEARTBEAT_SECONDS, ensure_automations, host

    settings.inbox.mkdir(parents=True, exist_ok=True)
    settings.out.mkdir(parents=True, exist_ok=True)
    recipe = settings.recipe
    # Each flow run is a child process; they share the cores between the runs in flight. The environment
    # is how a child learns it: it reads `settings().parallel_assets` (assetline.settings).
    os.environ["ASSETLINE_PARALLEL_ASSETS"] = str(recipe.run.concurrency)
    ensure_automations()  # a run whose process dies, or goes silent, comes back (run.crash_retries times)
    # One slot more than the assets in flight: a batch run only waits on the asset runs it started.
    # Heartbeats as often as the zombie automation expects them (Prefect's default, 180 s, is too rare for it).
    runner = Runner(name=f"assetline-{host()}", query_seconds=RUNNER_POLL_SECONDS, limit=recipe.run.concurrency + 1,
                    heartbeat_seconds=HEARTBEAT_SECONDS)  # fmt: skip
    for deployment in deployments(settings):
        runner.add_deployment(deployment)
    watcher = InboxWatcher(settings.inbox, recipe.inbox, exclude=[settings.out])

    stopping = False

    def stop() -> None:
        """SIGINT or SIGTERM, once: stop taking work, cancel runs in flight, let `start` return."""
        nonlocal stopping
        if stopping:
            log.info("already stopping")
            return
        stopping = True
        watcher.stop()
        runner.handle_sigterm()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)

        async def when_started() -> None:
            while not runner.started:
                await asyncio.sleep(0.1)
            for sig in (signal.SIGINT, signal.SIGTERM):  # the runner installed its own SIGTERM handler: ours again
                loop.add_signal_handler(sig, stop)
            if stopping:
                return
            watcher.start()
            if settings.catch_up:
                await run_deployment(BATCH_DEPLOYMENT, timeout=0, tags=["catch-up"])
            on_ready()

        starter = asyncio.create_task(when_started())
        try:
            await runner.start()
        finally:
            starter.cancel()

    try:
        asyncio.run(main())
    finally:
        watcher.stop()
