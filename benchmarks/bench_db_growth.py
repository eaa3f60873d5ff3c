"""Database growth: how many bytes of Prefect database one served asset costs, and in which tables.

`assetline serve` on its local SQLite server; N stills (default 12, 480x360:
larger than the thumbnails, as real stills are) dropped into the inbox, each
run waited on. Reports the file's growth (SQLite + WAL, as bench_load does)
and, from SQLite's `dbstat` table, the bytes each table and index gained, so
what an asset costs is seen by kind: task runs and states, logs, events,
artifacts (and the share of those that is thumbnails).

Prints a markdown section and writes it to benchmarks/results/db_growth.md,
its key figures in db_growth.json beside it.

    python benchmarks/bench_db_growth.py [--assets 12] [--size 480x360]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_load import all_runs, db_bytes, make_stills, served, wait  # noqa: E402

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
DATA_URL = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


def table_bytes(database: Path) -> dict[str, int]:
    """Bytes of pages each table or index holds (its own, from `dbstat`), read from a copy: the server keeps writing."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as source, sqlite3.connect(copy) as target:
            source.backup(target)  # the WAL's pages included
        with sqlite3.connect(copy) as db:
            rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return dict(rows)


def artifact_bytes(database: Path) -> tuple[int, int]:
    """Bytes of artifact data (artifacts and their collections), and of that the inline `data:` images."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        texts = [r[0] or "" for r in db.execute("SELECT data FROM artifact UNION ALL SELECT data FROM artifact_collection")]
    return sum(len(t) for t in texts), sum(len(m) for t in texts for m in DATA_URL.findall(t))


def event_bytes(database: Path) -> dict[str, tuple[int, int]]:
    """Per event type: how many events, and the bytes of their JSON columns (resource, related, payload)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event, COUNT(*), SUM(LENGTH(resource) + LENGTH(related) + LENGTH(payload)) "
                          "FROM events GROUP BY event").fetchall()  # fmt: skip
    return {name: (count, size or 0) for name, count, size in rows}


def group_of(name: str) -> str:
    for prefix, group in (("artifact", "artifacts"), ("log", "logs"), ("event", "events"), ("task_run", "task runs + states"),
                          ("flow_run", "flow runs + states"), ("automation", "events")):  # fmt: skip
        if name.removeprefix("ix_").removeprefix("uq_").removeprefix("sqlite_autoindex_").startswith(prefix):
            return group
    return "other"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=12)
    parser.add_argument("--size", default="480x360", help="still size WxH (default 480x360)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "db_growth.md")
    args = parser.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="assetline-bench-db-") as tmp:
        root = Path(tmp)
        src, inbox, out, home = root / "src", root / "inbox", root / "out", root / "home"
        make_stills(src, args.assets, w, h, lambda i, w, h: (w + i, h + i))
        with served(root, inbox, out, home, dict(os.environ)) as client:
            time.sleep(5)
            database = home / "prefect.db"
            file_before, tables_before, events_before = db_bytes(home), table_bytes(database), event_bytes(database)
            for path in sorted(src.iterdir()):
                shutil.move(str(path), inbox / path.name)
            wait(f"{args.assets} runs to finish",
                 lambda: sum(r["state_type"] in FINAL for r in all_runs(client, "process-asset")) >= args.assets)  # fmt: skip
            time.sleep(10)  # the last logs and events reach the database
            runs = all_runs(client, "process-asset")
            file_after, tables_after = db_bytes(home), table_bytes(database)
            art_total, art_images = artifact_bytes(database)
            events_after = event_bytes(database)

    completed = sum(r["state_type"] == "COMPLETED" for r in runs)
    n = args.assets
    groups: dict[str, int] = {}
    for name in set(tables_before) | set(tables_after):
        grown = tables_after.get(name, 0) - tables_before.get(name, 0)
        groups[group_of(name)] = groups.get(group_of(name), 0) + grown
    pages = sum(groups.values())
    lines = [
        f"## Database growth: {n} stills of {args.size} through `assetline serve`",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"local SQLite server, default recipe: `python benchmarks/bench_db_growth.py --assets {n} --size {args.size}`",
        "",
        "| | per asset |",
        "|---|---:|",
        f"| database file (SQLite + WAL) growth | {(file_after - file_before) / n / 1024:.0f} KiB |",
        f"| pages gained by tables and indexes (dbstat) | {pages / n / 1024:.0f} KiB |",
        *[f"| &nbsp; {g} | {b / n / 1024:.1f} KiB |" for g, b in sorted(groups.items(), key=lambda kv: -kv[1])],
        f"| artifact data (artifacts + collections) | {art_total / n / 1024:.1f} KiB |",
        f"| &nbsp; of which inline `data:` thumbnails | {art_images / n / 1024:.1f} KiB |",
        "",
        "Events gained per asset, by type (count; bytes of their JSON, before indexes and event_resources rows):",
        "",
        "| event | per asset | JSON bytes per asset |",
        "|---|---:|---:|",
        *[f"| `{name}` | {c / n:.1f} | {b / n / 1024:.1f} KiB |" for name, (c, b) in sorted(
            ((k, (v[0] - events_before.get(k, (0, 0))[0], v[1] - events_before.get(k, (0, 0))[1])) for k, v in events_after.items()),
            key=lambda kv: -kv[1][1]) if c > 0],
        "",
        f"{completed} of {n} runs Completed.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from report import target, write_fragment

    growth = (file_after - file_before) / n
    targets = [target("database growth per asset", growth / 1024, measured=f"{growth / 1024:.0f} KiB",
                      detail=f"of which artifacts {art_total / n / 1024:.1f} KiB")]  # fmt: skip
    figures = {"assets": n, "size": args.size, "completed": completed, "file_growth_per_asset": growth,
               "pages_per_asset": pages / n, "groups_per_asset": {g: b / n for g, b in groups.items()},
               "artifact_bytes_per_asset": art_total / n, "thumbnail_bytes_per_asset": art_images / n}  # fmt: skip
    write_fragment(args.results, text, "db_growth", targets, figures, problems=[] if completed == n else [f"{n - completed} runs not Completed"])
    return 0 if completed == n else 1


if __name__ == "__main__":
    sys.exit(main())
