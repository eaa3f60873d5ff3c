"""Load: 200 small assets dropped into the inbox at once, served by `assetline serve` on its local server.

Checks, and exits non-zero when one fails: every asset processed exactly once
(one output folder each, one "done" summary each), no run failed or crashed
(in particular none from the SQLite database being busy), nothing partial
left. Reports throughput (assets per minute, from the first drop to the last
run finished) and the Prefect database's growth per asset (SQLite file plus
WAL, before the burst and after).

Prints a markdown section and writes it to benchmarks/results/load.md, its
key figures in load.json beside it (`benchmarks/report.py` puts it in RESULTS.md).

    python benchmarks/bench_load.py [--assets 200] [--size 64x48]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, check, timeout=7200, every=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("*.db*") if p.is_file())


def all_runs(client: httpx.Client, flow: str) -> list[dict]:
    runs, offset = [], 0
    while True:
        page = client.post("/flow_runs/filter", json={"flows": {"name": {"any_": [flow]}}, "limit": 200, "offset": offset}).json()
        runs += page
        if len(page) < 200:
            return runs
        offset += 200


def make_stills(src: Path, n: int, w: int, h: int, size_of) -> None:
    """`n` JPEG stills in `src` from four skimage photos, still i at `size_of(i, w, h)` (each its own content)."""
    from PIL import Image
    from skimage import data

    src.mkdir(parents=True, exist_ok=True)
    base = [Image.fromarray(getattr(data, name)()) for name in ("chelsea", "astronaut", "coffee", "rocket")]
    for i in range(n):
        base[i % 4].resize(size_of(i, w, h)).save(src / f"still-{i:03d}.jpg", quality=85)


@contextmanager
def served(root: Path, inbox: Path, out: Path, home: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    """`assetline serve` on its own local server (PREFECT_HOME `home`), up and with its catch-up batch done; stopped after."""
    port = free_port()
    inbox.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")} | {"PREFECT_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetline.cli", "serve", "--inbox", str(inbox), "--out", str(out), "--port", str(port)],
        stdout=open(root / "serve.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait("serve", lambda: "stop with Ctrl-C" in (root / "serve.log").read_text() or proc.poll() is not None, 300, 0.5)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=60) as client:
            wait("the catch-up batch", lambda: any(r["state_type"] == "COMPLETED" for r in all_runs(client, "batch-inbox")))
            yield client
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=180)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--size", default="64x48", help="still size WxH (default 64x48)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "load.md")
    args = parser.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="assetline-bench-load-") as tmp:
        root = Path(tmp)
        src, inbox, out, home = root / "src", root / "inbox", root / "out", root / "home"
        make_stills(src, args.assets, w, h, lambda i, w, h: (w + i % 17, h + i // 17))
        with served(root, inbox, out, home, dict(os.environ)) as client:
            db_before = db_bytes(home)
            start = time.time()
            for path in sorted(src.iterdir()):  # "at once": a move into the inbox, as fast as the file system goes
                shutil.move(str(path), inbox / path.name)
            final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            runs = wait(f"{args.assets} runs to finish",
                        lambda: (r := all_runs(client, "process-asset")) and sum(x["state_type"] in final for x in r) >= args.assets and r)  # fmt: skip
            time.sleep(5)
            runs = all_runs(client, "process-asset")
            end = max(datetime.fromisoformat(r["end_time"].replace("Z", "+00:00")).timestamp() for r in runs if r["end_time"])
            arts = []
            offset = 0
            while True:
                page = client.post("/artifacts/filter", json={"artifacts": {"type": {"any_": ["markdown"]}}, "limit": 200, "offset": offset}).json()
                arts += page
                if len(page) < 200:
                    break
                offset += 200
            time.sleep(2)
            db_after = db_bytes(home)
        bad = [(r["name"], r["state_type"], (r["state"] or {}).get("message")) for r in runs if r["state_type"] != "COMPLETED"]
        busy = [b for b in bad if b[2] and "locked" in b[2].lower()]
        names = [f"still-{i:03d}" for i in range(args.assets)]
        folders = {n: list(out.glob(f"{n}-*")) for n in names}
        not_once = [n for n, f in folders.items() if len(f) != 1]
        done = {}
        for a in arts:
            if ": done" in a["data"].split("\n", 1)[0]:
                stem = a["data"].split("### ", 1)[1].split(".jpg", 1)[0]
                done[stem] = done.get(stem, 0) + 1
        twice = [n for n in names if done.get(n, 0) != 1]
        partial = [p for p in out.rglob("*") if p.is_file() and (".assetline-staging" in p.parts or p.name.endswith(".tmp"))]
        server_log = (home / "server.log").read_text(errors="replace") if (home / "server.log").exists() else ""
        locked_in_log = server_log.lower().count("database is locked")

    seconds = end - start
    ok = not bad and not not_once and not twice and not partial
    growth = (db_after - db_before) / args.assets
    lines = [
        f"## Load: {args.assets} stills dropped into the inbox at once",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"`assetline serve` on its local SQLite server, default recipe, `run.concurrency` 2: "
        f"`python benchmarks/bench_load.py --assets {args.assets} --size {args.size}`",
        "",
        "| | |",
        "|---|---:|",
        f"| assets processed exactly once (one output folder, one 'done' summary) | {args.assets - len(set(not_once) | set(twice))} of {args.assets} |",
        f"| runs not Completed | {len(bad)} ({len(busy)} from the database being busy) |",
        f"| partial or temporary files left | {len(partial)} |",
        f"| wall time, first drop to last run finished | {seconds:.0f} s |",
        f"| throughput | {args.assets / seconds * 60:.1f} assets per minute ({seconds / args.assets:.2f} s each) |",
        f"| Prefect database (SQLite + WAL) before / after | {db_before / 1e6:.1f} MB / {db_after / 1e6:.1f} MB |",
        f"| database growth per asset | {growth / 1024:.0f} KiB |",
        f"| 'database is locked' lines in the server log | {locked_in_log} |",
        "",
        f"Verdict: **{'passed' if ok else 'FAILED'}**." + ("" if ok else f" Not Completed: {bad[:5]}; not once: {(not_once + twice)[:5]}"),
        "",
        "Each asset is a flow run in a process of its own (started by the runner), so most of an asset's time at this size "
        "is Prefect and Python start-up, not the models. Beyond one machine, or for bursts far larger than this, use a "
        "Postgres-backed server: SQLite serialises every write.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from report import target, write_fragment  # benchmarks/report.py: the section, and its key figures as JSON

    once = args.assets - len(set(not_once) | set(twice))
    targets = [
        target("assets processed exactly once", once, "==", args.assets, measured=f"{once} of {args.assets}",
               target_text=f"all {args.assets}"),
        target("runs not Completed", len(bad), "==", 0, measured=str(len(bad)), target_text="none",
               detail=f"{len(busy)} from the database being busy"),
        target("load throughput", args.assets / seconds * 60, measured=f"{args.assets / seconds * 60:.1f} assets per minute",
               detail=f"database growth {growth / 1024:.0f} KiB per asset"),
    ]  # fmt: skip
    figures = {"assets": args.assets, "seconds": seconds, "once": once, "not_completed": len(bad), "busy": len(busy),
               "partial": len(partial), "db_growth_per_asset": growth, "locked_in_log": locked_in_log}  # fmt: skip
    write_fragment(args.results, text, "load", targets, figures,
                   problems=[] if ok else [f"verdict FAILED ({len(partial)} partial files left)"])  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
