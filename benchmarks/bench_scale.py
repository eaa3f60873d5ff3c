"""Scale-out: throughput with 1, 2 and 3 workers, on PostgreSQL against SQLite; API latency under load; a lost worker.

The README's "More than one machine" set-up on this machine (tests/helpers/cluster.py,
as tests/test_scale.py runs it): one Prefect server, the `process` work pool,
`prefect deploy` of configs/prefect.yaml, N `prefect worker start --limit 1`
and `assetline watch`. A burst of small stills (default 8, cut out with u2netp,
upscaled with Lanczos: orchestration, not models) lands in the inbox at once.

Per set-up it reports assets a minute from the burst to the last delivery, and
the API's latency seen by a probe that keeps asking during the burst, per kind of
request the cluster makes: the health check, a worker's poll
(`get_scheduled_flow_runs`), a UI read (`flow_runs/filter`), a log write. Two
cores bound all of this: more workers than cores only share them.

Then, on Postgres with 2 workers, a worker is SIGKILLed with its flow-run
processes while it runs an asset, and the time from the kill to that asset's
run marked Crashed (the zombie automation) and running again on the other
worker is measured.

Prints a markdown section and writes it to benchmarks/results/scale.md, its
figures in scale.json beside it.

    python benchmarks/bench_scale.py [--assets 8] [--workers 1,2,3] [--no-kill]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))

from bench_load import make_stills  # noqa: E402
from helpers.cluster import descendants, flow_run_of, kill_machine, servers  # noqa: E402
from helpers.processes import wait_until  # noqa: E402

BOUND_S = 1200  # against hangs only
KINDS = ("health", "worker poll", "runs read", "log write")


class Probe(threading.Thread):
    """Asks the API each kind of request in turn, every `every` seconds, until stopped; keeps each latency."""

    def __init__(self, site, every: float = 0.5):
        super().__init__(daemon=True)
        self.site, self.every = site, every
        self.seen: dict[str, list[float]] = {k: [] for k in KINDS}
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        import httpx

        requests = {
            "health": lambda c: c.get("/health"),
            "worker poll": lambda c: c.post("/work_pools/process/get_scheduled_flow_runs", json={"limit": 10}),
            "runs read": lambda c: c.post("/flow_runs/filter", json={"limit": 50, "sort": "EXPECTED_START_TIME_DESC"}),
            "log write": lambda c: c.post("/logs/", json=[{"name": "bench_scale", "level": 20, "message": "probe",
                                                          "timestamp": datetime.now(timezone.utc).isoformat()}]),  # fmt: skip
        }
        with httpx.Client(base_url=self.site.api, timeout=60, auth=self.site.auth) as client:
            while not self.done.is_set():
                for kind, ask in requests.items():
                    start = time.perf_counter()
                    try:
                        answer = ask(client)
                        answer.raise_for_status()
                        self.seen[kind].append(time.perf_counter() - start)
                    except httpx.HTTPError:
                        self.errors += 1
                self.done.wait(self.every)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_workers(site, count: int) -> list[str]:
    names = [f"worker-{i + 1}" for i in range(count)]
    for name in names:
        site.prefect(name, "worker", "start", "--pool", "process", "--name", name, "--limit", "1",
                     env=site.cluster_key | {"ASSETLINE_KEYS": str(site.root / f"keys-{name}")})  # fmt: skip
    site.start("watcher", sys.executable, "-m", "assetline.cli", "watch", "--inbox", str(site.inbox),
               "--set", "inbox.hold_seconds=0.5", "--set", "inbox.poll_seconds=0.25")  # fmt: skip
    wait_until("the watcher", lambda: "watching" in (site.root / "watcher.log").read_text(), 120, 0.5)
    return names


def delivered(site, count: int) -> bool:
    return sum(1 for f in site.out.glob("still-*") if (f / "upscaled.png").is_file()) >= count


def burst(root: Path, database: str, workers: int, assets: int) -> dict:
    with servers(root, high_availability=False, sqlite=database == "SQLite") as site:
        start_workers(site, workers)
        make_stills(root / "src", assets, 96, 72, lambda i, w, h: (w + i, h))
        probe = Probe(site)
        probe.start()
        started = time.monotonic()
        for path in sorted((root / "src").iterdir()):
            shutil.move(str(path), site.inbox / path.name)
        wait_until(f"{assets} assets delivered", lambda: delivered(site, assets), BOUND_S, 0.5)
        seconds = time.monotonic() - started
        probe.done.set()
        probe.join()
        runs = site.flow_runs()
        failed = sum(r["state_type"] not in ("COMPLETED", "RUNNING", "PENDING", "SCHEDULED") for r in runs)
    return {"database": database, "workers": workers, "assets": assets, "seconds": seconds,
            "per_minute": assets / (seconds / 60), "failed_runs": failed, "probe_errors": probe.errors,
            "latency": {k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "n": len(v)} for k, v in probe.seen.items()}}  # fmt: skip


def lost_worker(root: Path, assets: int) -> dict:
    """Postgres, 2 workers: one SIGKILLed with its flow-run processes mid-run; kill -> Crashed -> running elsewhere."""
    with servers(root, high_availability=False) as site:
        names = start_workers(site, 2)
        make_stills(root / "src", assets, 96, 72, lambda i, w, h: (w + i, h + 7))
        for path in sorted((root / "src").iterdir()):
            shutil.move(str(path), site.inbox / path.name)

        def running_on_first() -> set[str] | None:
            running = {r["id"] for r in site.flow_runs() if r["state_type"] == "RUNNING"}
            mine = {run for pid in descendants(site.procs[names[0]].pid) if (run := flow_run_of(pid)) in running}
            return mine or None

        lost = wait_until("worker-1 to run an asset", running_on_first, BOUND_S, 0.2)
        kill_machine(site.procs[names[0]])
        killed = time.time()
        wait_until(f"{assets} assets delivered", lambda: delivered(site, assets), BOUND_S, 1.0)

        def when(state: dict) -> float:
            return datetime.fromisoformat(state["timestamp"]).timestamp()

        crashed, again = [], []
        for run_id in lost:
            history = site.states(run_id)
            crash = next((s for s in history if s["type"] == "CRASHED"), None)
            if crash is None:
                continue
            crashed.append(when(crash) - killed)
            back = next((s for s in history if s["type"] == "RUNNING" and when(s) > when(crash)), None)
            if back is not None:
                again.append(when(back) - killed)
    return {"lost_runs": len(lost), "to_crashed_s": crashed, "to_running_again_s": again}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=8)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--databases", default="PostgreSQL,SQLite")
    parser.add_argument("--no-kill", action="store_true", help="skip the lost-worker measurement")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "scale.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    bursts = []
    for database in args.databases.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            with tempfile.TemporaryDirectory(prefix="assetline-bench-scale-") as tmp:
                print(f"== {database}, {workers} worker(s), {args.assets} stills", flush=True)
                bursts.append(burst(Path(tmp), database, workers, args.assets))
                print(f"   {bursts[-1]['per_minute']:.1f} assets a minute", flush=True)
    lost = None
    if not args.no_kill:
        with tempfile.TemporaryDirectory(prefix="assetline-bench-scale-") as tmp:
            print("== a lost worker (PostgreSQL, 2 workers)", flush=True)
            lost = lost_worker(Path(tmp), max(args.assets, 6))

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value * 1000:.0f}"

    lines = [
        f"## Scale-out: {args.assets} stills a burst, 1 to {max(int(w) for w in args.workers.split(','))} workers",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}: "
        f"`python benchmarks/bench_scale.py --assets {args.assets} --workers {args.workers}`. One Prefect server, "
        "`prefect worker start --limit 1` each, the watcher; stills cut out (u2netp) and upscaled with Lanczos.",
        "",
        "| database | workers | seconds | assets a minute | " + " | ".join(f"{k} p50 / p95 ms" for k in KINDS) + " | failed runs |",
        "|---|---:|---:|---:|" + "---:|" * len(KINDS) + "---:|",
    ]
    for b in bursts:
        cells = [f"{ms(b['latency'][k]['p50'])} / {ms(b['latency'][k]['p95'])}" for k in KINDS]
        lines.append(f"| {b['database']} | {b['workers']} | {b['seconds']:.0f} | {b['per_minute']:.1f} | "
                     + " | ".join(cells) + f" | {b['failed_runs']} |")  # fmt: skip
    lines += ["", "Latency: a probe asking each kind in turn every 0.5 s through the burst, from this machine "
              f"(loopback); probe errors: {sum(b['probe_errors'] for b in bursts)}. Two cores are shared by the server, "
              "the workers and their flow-run processes: more workers than cores only share them.", ""]  # fmt: skip
    if lost is not None:
        lines += [f"A lost worker (PostgreSQL, 2 workers, SIGKILLed with its flow-run processes while it ran "
                  f"{lost['lost_runs']} asset(s)): from the kill to Crashed (the zombie automation, 90 s without a heartbeat) "
                  + (", ".join(f"{s:.0f} s" for s in lost["to_crashed_s"]) or "–")
                  + "; to running again on the other worker " + (", ".join(f"{s:.0f} s" for s in lost["to_running_again_s"]) or "–")
                  + ".", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    from report import target, write_fragment

    targets = [target(f"assets a minute, {b['database']}, {b['workers']} worker(s)", b["per_minute"],
                      measured=f"{b['per_minute']:.1f}") for b in bursts]  # fmt: skip
    if lost is not None and lost["to_running_again_s"]:
        worst = max(lost["to_running_again_s"])
        targets.append(target("a lost worker's asset running again elsewhere", worst, measured=f"{worst:.0f} s"))
    problems = [f"{b['database']}/{b['workers']}: {b['failed_runs']} failed runs" for b in bursts if b["failed_runs"]]
    if lost is not None and len(lost["to_running_again_s"]) < lost["lost_runs"]:
        problems.append("a lost run was not seen running again")
    write_fragment(args.results, text, "scale", targets, {"bursts": bursts, "lost_worker": lost}, problems=problems)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
