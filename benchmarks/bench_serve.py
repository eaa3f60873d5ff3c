"""Serving benchmark: how soon a landed file's flow run starts, and throughput with one worker vs two.

1. Latency: `assetline serve` (its own local server) with the default recipe;
   files are delivered one at a time (copied under a .part name, then renamed,
   as transfer tools do), `--gap` seconds apart. For each: the time from the
   rename to its flow run's start (state Running), split into the watcher's
   share (rename -> event, which includes the `inbox.hold_seconds` wait) and
   Prefect's (event -> run created -> run started).
2. Throughput: a local Prefect server, `configs/prefect.yaml` deployed to a
   `process` pool, N stills posted as arrival events at once, drained by one
   process worker, then (fresh outputs) by two; each worker runs one flow run
   at a time and tells assetline two run at once (ASSETLINE_PARALLEL_ASSETS),
   so the cores are split, not oversubscribed.

Prints a markdown section and writes it to benchmarks/results/serve.md
(`--results` to change), its key figures in serve.json beside it;
`benchmarks/report.py` puts it in RESULTS.md.

    python benchmarks/bench_serve.py [--files 10] [--assets 12] [--hold 2.0]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


sys.path.insert(0, str(HERE))
from bench_load import free_port, wait as _wait  # noqa: E402


def wait(what, check, timeout=900, every=0.25):
    return _wait(what, check, timeout, every)


def parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def make_stills(folder: Path, count: int, size=(320, 240)) -> list[Path]:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    names = ("chelsea", "astronaut", "coffee", "rocket")
    made = []
    for i in range(count):
        img = Image.fromarray(getattr(data, names[i % 4])()).resize((size[0] + 4 * i, size[1]))
        path = folder / f"{names[i % 4]}-{i:03d}.jpg"
        img.save(path, quality=90)
        made.append(path)
    return made


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def base_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def latency(work: Path, files: int, gap: float, hold: float) -> dict:
    inbox, out = work / "inbox", work / "out"
    inbox.mkdir(parents=True)
    stills = make_stills(work / "src", files)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetline.cli", "serve", "--inbox", str(inbox), "--out", str(out), "--port", str(port),
         "--set", f"inbox.hold_seconds={hold}"],
        stdout=log, stderr=subprocess.STDOUT, env=base_env(work / "home"), start_new_session=True,
    )  # fmt: skip
    try:
        wait("serve", lambda: "stop with Ctrl-C" in (work / "serve.log").read_text() or proc.poll() is not None)
        client = httpx.Client(base_url=api, timeout=30)
        runs = lambda: client.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["process-asset"]}}}).json()  # noqa: E731
        time.sleep(5)  # let the catch-up batch settle
        landed = {}
        for path in stills:
            partial = inbox / (path.name + ".part")
            shutil.copyfile(path, partial)
            os.replace(partial, inbox / path.name)
            landed[path.name] = time.time()
            time.sleep(gap)
        done = wait("all runs", lambda: (r := runs()) and len([x for x in r if x["state_type"] == "COMPLETED"]) >= files and r)
        page = client.post("/events/filter", json={"filter": {"event": {"name": ["assetline.asset.arrived"]}}, "limit": 50}).json()
        assert "events" in page, page
        emitted = {e["payload"]["path"]: parse_time(e["occurred"]) for e in page["events"]}
        # The first step (remove_background, the first model) of each run: when the heavy work began.
        tasks = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [r["id"] for r in done]}}}).json()
        first_step: dict[str, float] = {}
        for t in tasks:
            if t.get("start_time"):
                began = parse_time(t["start_time"])
                first_step[t["flow_run_id"]] = min(first_step.get(t["flow_run_id"], began), began)
    finally:
        stop(proc)
    rows = []
    for r in done:
        name = Path(r["parameters"]["path"]).name
        if name not in landed:
            continue
        t0 = landed[name]
        rows.append({"to_event": emitted[name] - t0, "to_created": parse_time(r["created"]) - t0,
                     "to_start": parse_time(r["start_time"]) - t0, "to_step": first_step[r["id"]] - t0,
                     "event_to_step": first_step[r["id"]] - emitted[name],
                     "run": parse_time(r["end_time"]) - parse_time(r["start_time"])})  # fmt: skip
    med = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
    rank = max(0, math.ceil(0.9 * len(rows)) - 1)  # nearest-rank 90th percentile
    p90 = {k: sorted(x[k] for x in rows)[rank] for k in rows[0]}
    return {"files": len(rows), "hold": hold, "median": med, "p90": p90, "max_start": max(x["to_start"] for x in rows)}


def throughput(work: Path, assets: int, workers: int) -> dict:
    inbox, out = work / "inbox", work / "out"
    make_stills(inbox, assets)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = base_env(work / "home")
    env.update(PREFECT_API_URL=api, ASSETLINE_INBOX=str(inbox), ASSETLINE_OUT=str(out), PREFECT_WORKER_QUERY_SECONDS="1",
               ASSETLINE_PARALLEL_ASSETS=str(workers))  # fmt: skip
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                      stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True))  # fmt: skip
        wait("server", lambda: _healthy(api))
        for args in (["work-pool", "create", "process", "--type", "process"],
                     ["--no-prompt", "deploy", "--prefect-file", str(REPO / "configs" / "prefect.yaml"), "--all"]):  # fmt: skip
            subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=REPO, check=True, capture_output=True)
        for i in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "process", "--limit", "1"],
                                          stdout=open(work / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))  # fmt: skip
        client = httpx.Client(base_url=api, timeout=30)
        wait("workers", lambda: len(client.post("/work_pools/process/workers/filter", json={}).json()) >= workers)
        names = sorted(p.name for p in inbox.iterdir())
        start = time.time()
        client.post("/events", json=[
            {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(), "event": "assetline.asset.arrived",
             "resource": {"prefect.resource.id": f"assetline.asset.bench-{i}"}, "payload": {"path": n}}  # fmt: skip
            for i, n in enumerate(names)
        ])
        only = {"flows": {"name": {"any_": ["process-asset"]}}}
        runs = wait("all runs", lambda: (r := client.post("/flow_runs/filter", json=only).json())
                    and len([x for x in r if x["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]) >= assets and r, every=1)  # fmt: skip
        end = max(parse_time(r["end_time"]) for r in runs if r["end_time"])
        failed = [r["name"] for r in runs if r["state_type"] != "COMPLETED"]
    finally:
        for p in reversed(procs):
            stop(p)
    return {"workers": workers, "assets": assets, "seconds": end - start, "per_minute": assets / (end - start) * 60, "failed": failed}


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10, help="files delivered one at a time for the latency (default 10)")
    parser.add_argument("--gap", type=float, default=6.0, help="seconds between deliveries (default 6)")
    parser.add_argument("--hold", type=float, default=2.0, help="inbox.hold_seconds (default 2.0, the recipe default)")
    parser.add_argument("--assets", type=int, default=12, help="stills drained by the workers (default 12)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "serve.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetline-bench-serve-") as tmp:
        root = Path(tmp)
        lat = latency(root / "latency", args.files, args.gap, args.hold)
        one = throughput(root / "one", args.assets, 1)
        two = throughput(root / "two", args.assets, 2)
    m, p = lat["median"], lat["p90"]
    lines = [
        "## Serving: event-to-run latency and worker throughput",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: `python benchmarks/bench_serve.py --files {args.files} "
        f"--assets {args.assets} --hold {args.hold}`",
        "",
        f"**Latency**, {lat['files']} stills delivered one at a time (rename into the inbox), `inbox.hold_seconds` {lat['hold']}:",
        "",
        "| from the file landing to | median, s | p90, s |",
        "|---|---:|---:|",
        f"| the arrival event (watcher: hold + hash) | {m['to_event']:.2f} | {p['to_event']:.2f} |",
        f"| its flow run created (trigger) | {m['to_created']:.2f} | {p['to_created']:.2f} |",
        f"| its flow run started (runner: poll + process start) | {m['to_start']:.2f} | {p['to_start']:.2f} |",
        f"| its first step's task run Running (its model then loads inside it) | {m['to_step']:.2f} | {p['to_step']:.2f} |",
        "",
        f"From the arrival event to the first step running: median **{m['event_to_step']:.2f} s** (p90 "
        f"{p['event_to_step']:.2f} s; target ≤ 3 s).",
        "",
        f"Target: median ≤ 5 s to the run starting: **{'met' if m['to_start'] <= 5 else 'missed'}** "
        f"({m['to_start']:.2f} s; slowest {lat['max_start']:.2f} s). Of it, {lat['hold']:.1f} s is the hold that "
        "proves a file complete; a shorter hold trades latency for safety with slow writers.",
        "",
        f"**Throughput**, {args.assets} stills of about 0.1 MP posted as events at once, process workers (one run each at a time):",
        "",
        "| workers | wall time, s | assets per minute | failed |",
        "|---:|---:|---:|---:|",
        f"| 1 | {one['seconds']:.1f} | {one['per_minute']:.1f} | {len(one['failed'])} |",
        f"| 2 | {two['seconds']:.1f} | {two['per_minute']:.1f} | {len(two['failed'])} |",
        "",
        f"Two workers / one: **{two['per_minute'] / one['per_minute']:.2f}×** the throughput on this {os.cpu_count()}-core machine "
        "(each asset's models already use every core they are given, so a second worker on the same machine mostly "
        "overlaps one asset's Prefect and process start-up with another's compute; on a second machine it would add its cores).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from report import target, write_fragment  # benchmarks/report.py: the section, and its key figures as JSON

    speedup = two["per_minute"] / one["per_minute"]
    targets = [
        target("event-to-run latency, median (file landed -> flow run started)", m["to_start"], "<=", 5,
               measured=f"{m['to_start']:.2f} s", detail=f"p90 {p['to_start']:.2f} s, hold {lat['hold']:g} s"),
        target("arrival event -> its first step's task run Running, median", m["event_to_step"], "<=", 3,
               measured=f"{m['event_to_step']:.2f} s", detail=f"p90 {p['event_to_step']:.2f} s"),
        target("small stills under `serve`, one worker, assets a minute", one["per_minute"], ">=", 90,
               measured=f"{one['per_minute']:.1f}", detail=f"{args.assets} stills of about 0.1 MP, upscale included"),
        target("throughput, two workers / one", speedup, measured=f"{speedup:.2f}×",
               detail=f"{one['per_minute']:.1f} vs {two['per_minute']:.1f} assets per minute"),
    ]  # fmt: skip
    failed = len(one["failed"]) + len(two["failed"])
    write_fragment(args.results, text, "serve", targets, {"latency": lat, "one_worker": one, "two_workers": two},
                   problems=[f"{failed} flow runs failed in the throughput runs"] if failed else [])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
