"""Scale-out as the README's "More than one machine" tells it, on a real PostgreSQL: a lost worker and a restarted server.

A Prefect server on Postgres (tests/helpers/postgres.py), the `process` work
pool, `prefect deploy` of configs/prefect.yaml, two `prefect worker start
--limit 2` and `assetline watch`, each its own process. A burst of small
stills lands in the inbox; one worker is SIGKILLed with its flow-run processes
while it runs assets (a lost machine: nobody is left to report the crash), and
the server is killed and started again on the same port and database. Then
every asset is delivered once, `verify` passes and no run failed: the killed
worker's runs went silent, were marked Crashed by the zombie automation
(heartbeats) and re-run on the other worker.

The same burst runs again in the README's high-availability set-up: two API
servers (`--no-services`) and one `prefect server services start` on the same
Postgres, with Redis (tests/helpers/redis.py) for events, trigger state,
leases and Docket. worker-a talks to one API server, worker-b and the watcher
to the other, and the one that is restarted mid-burst is worker-a's. A second
test posts arrivals to either API server and counts one run for each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from helpers import photo, stop_group, wait_until
from helpers.cluster import TERMINAL, descendants, flow_run_of, kill_machine, logs_shown_on_failure, servers

pytestmark = pytest.mark.slow  # a real Postgres, Prefect server, workers and watcher: `-m 'not slow'` skips it

# The issue asks for 60; on 2 cores a flow-run process costs seconds of CPU (about 5 assets a minute
# here, with the lost worker's minute and a half), so 16 keep the burst near 6 minutes. SCALE_ASSETS=60 runs the
# issue's full burst.
ASSETS = int(os.environ.get("SCALE_ASSETS", 16))
BOUND_S = 900  # against hangs only


@pytest.fixture(params=["one-server", "high-availability"])
def cluster(request, tmp_path):
    """The deployments, two workers and the watcher; with Redis, worker-a on one API server, the rest on the other."""
    with servers(tmp_path, request.param == "high-availability") as site:
        for name, api in (("worker-a", site.api), ("worker-b", site.api_b)):  # each "machine" its own empty keys folder
            site.prefect(name, "worker", "start", "--pool", "process", "--name", name, "--limit", "2",
                         env=site.cluster_key | {"ASSETLINE_KEYS": str(tmp_path / f"keys-{name}"), "PREFECT_API_URL": api})  # fmt: skip
        site.start("watcher", sys.executable, "-m", "assetline.cli", "watch", "--inbox", str(site.inbox),
                   "--set", "inbox.hold_seconds=0.5", "--set", "inbox.poll_seconds=0.25", env={"PREFECT_API_URL": site.api_b})  # fmt: skip
        wait_until("the watcher", lambda: "watching" in (tmp_path / "watcher.log").read_text(), 120, 0.5)
        yield site


def when(state: dict) -> float:
    return datetime.fromisoformat(state["timestamp"]).timestamp()


def test_burst_with_a_lost_worker_and_a_restarted_server_is_delivered_once_on_postgres(cluster):
    site = cluster
    with logs_shown_on_failure(site):
        automations = {a["name"] for a in site.client.post("/automations/filter", json={}).json()}
        assert {"assetline: re-run crashed runs", "assetline: mark runs Crashed when their heartbeats stop"} <= automations

        staged = site.root / "staged"
        staged.mkdir()
        names = []
        for i in range(ASSETS):
            name = f"still-{i:02d}.jpg"
            photo(("chelsea", "coffee", "astronaut", "rocket")[i % 4], (96 + i, 72)).save(staged / name, quality=90)
            names.append(name)
        started = time.monotonic()
        first, second = names[: ASSETS // 2], names[ASSETS // 2 :]
        for name in first:  # the first half of the burst at once, each file renamed in whole
            os.replace(staged / name, site.inbox / name)

        # 1. Mid-burst, the server is killed and started again on the same port and database (with Redis: worker-a's
        # API server; the other one, the watcher's and worker-b's, and the services process go on).
        wait_until("a first asset delivered", lambda: any(site.out.glob("still-*/upscaled.png")), BOUND_S, 0.5)
        os.killpg(site.procs["server"].pid, signal.SIGKILL)
        site.procs["server"].wait(timeout=30)
        site.start_server()
        restarted_at = time.time()
        for name in second:
            os.replace(staged / name, site.inbox / name)

        # 2. The worker-a "machine" is lost while it runs assets that arrived after the restart: Prefect's
        # in-memory causal ordering holds back the state events of runs it saw before a restart for up to
        # 15 minutes (PRECEDING_EVENT_LOOKBACK), so the crash retry of those would come that late.
        def worker_a_running() -> dict[str, int] | None:
            running = {r["id"] for r in site.flow_runs() if r["state_type"] == "RUNNING"
                       and r["parameters"].get("path") in second}  # fmt: skip
            mine = {run: pid for pid in descendants(site.procs["worker-a"].pid) if (run := flow_run_of(pid)) in running}
            return mine or None

        lost = set(wait_until("worker-a to run an asset", worker_a_running, BOUND_S, 0.2))
        kill_machine(site.procs["worker-a"])
        killed_at = time.time()

        def delivered() -> bool:
            return all(len(folders := list(site.out.glob(f"{Path(n).stem}-*"))) == 1 and (folders[0] / "upscaled.png").is_file()
                       for n in names)  # fmt: skip

        wait_until("every asset delivered", delivered, BOUND_S, 1.0)
        finished = time.monotonic()

        def all_finished() -> tuple[list[dict], list[dict]] | None:
            runs = site.flow_runs()
            batches = [r for r in site.flow_runs("batch-inbox") if r["state_type"] != "SCHEDULED"]  # not the nightly ones
            if all(r["state_type"] in TERMINAL for r in runs + batches) and {r["id"] for r in runs} >= lost:
                return runs, batches
            return None

        runs, batches = wait_until("every run finished", all_finished, BOUND_S, 1.0)

        # Delivered, whole, verified; nothing failed.
        for name in names:
            (folder,) = site.out.glob(f"{Path(name).stem}-*")
            assert {"cutout.png", "cutout.png.provenance.json", "upscaled.png", "upscaled.png.provenance.json"} <= {
                p.name for p in folder.iterdir()}, folder  # fmt: skip
        leftovers = [p for p in site.out.rglob("*") if p.is_file() and (".assetline-staging" in p.parts or p.name.endswith(".tmp"))]
        assert not leftovers, leftovers
        failed = [(r["name"], r["state_type"], r["state"]["message"]) for r in runs + batches if r["state_type"] != "COMPLETED"]
        assert not failed, failed
        # Signed with the cluster's one key on both workers: verify on a third machine that trusts that CA alone.
        delivery = site.env | {"ASSETLINE_TRUST_ANCHORS": site.cluster_ca, "ASSETLINE_KEYS": str(site.root / "keys-delivery")}
        verify = subprocess.run([sys.executable, "-m", "assetline.cli", "verify", str(site.out)], capture_output=True,
                                text=True, env=delivery, timeout=600)  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert not list(site.root.glob("keys-*/*.key")), "a worker made a development CA of its own"

        assert not site.server_reached_out()

        # Each processed to completion exactly once: one "done" summary per asset (any twin run found it up to date).
        summaries = []
        while len(page := site.client.post("/artifacts/filter", json={"artifacts": {"type": {"any_": ["markdown"]}},
                                                                      "limit": 200, "offset": len(summaries)}).json()):  # fmt: skip
            summaries += page
        for name in names:
            done = [a for a in summaries if (a["data"] or "").startswith(f"### {name}: done")]
            assert len(done) == 1, (name, len(done))

        # The lost worker's runs: silent, so marked Crashed by the zombie automation, then run again elsewhere.
        back_running, crashed_after = [], []
        for run_id in lost:
            history = site.states(run_id)
            kinds = [s["type"] for s in history]
            assert "CRASHED" in kinds and kinds[-1] == "COMPLETED", kinds
            crash = next(s for s in history if s["type"] == "CRASHED")
            assert "no heartbeat" in (crash["message"] or ""), crash
            again = next(s for s in history if s["type"] == "RUNNING" and when(s) > when(crash))
            crashed_after.append(when(crash) - killed_at)
            back_running.append(when(again) - killed_at)
        # The runs did send heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY from prefect.yaml). Not asked of each lost run:
        # one killed within a moment of Running may die before its events client sends the first beat, and a re-run
        # that finds its asset up to date can end within a second, before its beat leaves the process.
        beating = [r["id"] for r in runs if site.client.post("/events/filter", json={"limit": 1, "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{r['id']}"]}}}).json()["events"]]  # fmt: skip
        assert len(beating) >= len(runs) // 2, (len(beating), len(runs))

        minutes = (finished - started) / 60
        setup = "2 API servers + services on Redis" if site.redis else "one server"
        print(f"\n{ASSETS} stills, 2 workers (--limit 2), Postgres, {setup}: delivered in {finished - started:.0f} s, "
              f"{ASSETS / minutes:.1f} assets a minute; {len(runs)} process-asset runs, {len(batches)} batch runs")
        print(f"server restarted; worker-a killed {killed_at - restarted_at:.0f} s later with {len(lost)} run(s) in flight; "
              "from the kill to Crashed: " + ", ".join(f"{s:.0f} s" for s in sorted(crashed_after)) +
              "; to running again elsewhere (after the runs queued before it): " + ", ".join(f"{s:.0f} s" for s in sorted(back_running)))


def test_an_arrival_announced_to_either_api_server_triggers_exactly_one_run(tmp_path):
    """High availability: the watcher's events reach the one services process through Redis from any API server."""
    with servers(tmp_path, high_availability=True) as site, logs_shown_on_failure(site):
        assert "NOAUTH" in site.redis.ping(password="")  # nothing reaches Redis without its password
        for api in (site.api, site.api_b):  # nor either API server without the auth string (the workers, the watcher
            # and this test's own client send it: the burst test's runs are made and reported through it)
            assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).status_code == 401
            assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30, auth=site.auth).status_code == 200
        paths = {site.api: [f"via-a-{i}.jpg" for i in range(3)], site.api_b: [f"via-b-{i}.jpg" for i in range(3)]}
        for api, names in paths.items():  # the watcher's own announcement (emit_arrival), a process per API server
            for i, name in enumerate(names):
                photo("coffee", (64 + i, 48)).save(site.inbox / name)
            announce = ("import hashlib, sys; from pathlib import Path; from assetline.inbox import emit_arrival\n"
                        "for n in sys.argv[2:]: emit_arrival(Path(sys.argv[1]) / n, Path(sys.argv[1]), hashlib.sha256(n.encode()).hexdigest(), 1)")  # fmt: skip
            done = subprocess.run([sys.executable, "-c", announce, str(site.inbox), *names], env=site.env | {"PREFECT_API_URL": api},
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        wanted = sorted(n for names in paths.values() for n in names)

        def triggered() -> list[dict] | None:
            runs = site.flow_runs()
            return runs if len(runs) >= len(wanted) else None

        wait_until("a run for each arrival", triggered, 300, 1.0)
        # No second run of any: the services process is the only trigger evaluator, whichever server took the event.
        # (A second evaluator, e.g. a server started without --no-services, would add its run within seconds.)
        time.sleep(15)
        runs = site.flow_runs()
        assert sorted(r["parameters"]["path"] for r in runs) == wanted, [(r["name"], r["parameters"]) for r in runs]
        assert all(r["deployment_id"] for r in runs)

        # A worker handed no key (an empty keys folder, no ASSETLINE_SIGNING_*): its run fails, naming that folder,
        # and makes no development CA of its own (which `verify` on any other machine would not trust).
        keyless = site.root / "keys-keyless"
        site.prefect("worker-keyless", "worker", "start", "--pool", "process", "--name", "keyless", "--limit", "1",
                     env={"ASSETLINE_KEYS": str(keyless)})  # fmt: skip

        def failed() -> dict | None:
            return next((r for r in site.flow_runs() if r["state_type"] in TERMINAL), None)

        ended = wait_until("the keyless worker's first run to end", failed, BOUND_S, 1.0)
        stop_group(site.procs.pop("worker-keyless"), timeout=30)
        assert ended["state_type"] == "FAILED", ended["state"]
        assert "signing key" in ended["state"]["message"] and str(keyless) in ended["state"]["message"], ended["state"]["message"]
        assert not list(keyless.glob("*.key")) and not list(site.out.rglob("*.provenance.json"))
