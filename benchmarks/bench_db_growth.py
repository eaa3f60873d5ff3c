"""Database growth: how many bytes of Prefect database one served asset costs, and in which tables.

`assetline serve` on its local SQLite server; N stills (default 12, 480x360:
larger than the thumbnails, as real stills are) dropped into the inbox, each
run waited on. Reports the file's growth (SQLite + WAL, as bench_load does)
and, from SQLite's `dbstat` table, the bytes each table and index gained, so
what an asset costs is seen by kind: task runs and states, logs, events,
artifacts (and the share of those that is thumbnails).

With `--postgres`, the same serve runs its server on a PostgreSQL of its own
(tests/helpers/postgres.py: Debian's postgresql, initdb in a temporary
folder), and the growth is the database's (`pg_database_size`) and each
table's with its indexes and TOAST (`pg_total_relation_size`): what a
scale-out cluster's database gains. Results go to db_growth_postgres.md.

Prints a markdown section and writes it to benchmarks/results/db_growth.md,
its key figures in db_growth.json beside it.

    python benchmarks/bench_db_growth.py [--assets 12] [--size 480x360] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # helpers.postgres, for --postgres

from bench_load import all_runs, db_bytes, make_stills, served, wait  # noqa: E402

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
DATA_URL = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


class SQLite:
    """The local server's database file: sizes from the file and `dbstat`, queries on a read-only connection."""

    kind = "local SQLite server"
    file_label = "database file (SQLite + WAL) growth"
    tables_label = "pages gained by tables and indexes (dbstat)"

    def __init__(self, home: Path):
        self.home, self.path = home, home / "prefect.db"

    def size(self) -> int:
        return db_bytes(self.home)

    def tables(self) -> dict[str, int]:
        return table_bytes(self.path)

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()


class Postgres:
    """A PostgreSQL database: its size, each table's with indexes and TOAST, queries through asyncpg (Prefect's)."""

    kind = "PostgreSQL 15 server"
    file_label = "database growth (pg_database_size)"
    tables_label = "tables with their indexes and TOAST (pg_total_relation_size)"

    def __init__(self, url: str):
        self.url = url.replace("postgresql+asyncpg://", "postgresql://")

    def query(self, sql: str) -> list[tuple]:
        import asyncpg

        async def fetch() -> list[tuple]:
            conn = await asyncpg.connect(self.url)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def size(self) -> int:
        return self.query("SELECT pg_database_size(current_database())")[0][0]

    def tables(self) -> dict[str, int]:
        rows = self.query("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                          "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")  # fmt: skip
        return dict(rows)


def table_bytes(database: Path) -> dict[str, int]:
    """Bytes of pages each table or index holds (its own, from `dbstat`), read from a copy: the server keeps writing."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as source, sqlite3.connect(copy) as target:
            source.backup(target)  # the WAL's pages included
        with sqlite3.connect(copy) as db:
            rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return dict(rows)


def artifact_bytes(db: SQLite | Postgres) -> tuple[int, int]:
    """Bytes of artifact data (artifacts and their collections), and of that the inline `data:` images."""
    texts = [r[0] or "" for r in db.query("SELECT CAST(data AS TEXT) FROM artifact UNION ALL "
                                           "SELECT CAST(data AS TEXT) FROM artifact_collection")]  # fmt: skip
    return sum(len(t) for t in texts), sum(len(m) for t in texts for m in DATA_URL.findall(t))


def event_bytes(db: SQLite | Postgres) -> dict[str, tuple[int, int]]:
    """Per event type: how many events, and the bytes of their JSON columns (resource, related, payload)."""
    rows = db.query("SELECT event, COUNT(*), SUM(LENGTH(CAST(resource AS TEXT)) + LENGTH(CAST(related AS TEXT)) + "
                    "LENGTH(CAST(payload AS TEXT))) FROM events GROUP BY event")  # fmt: skip
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
    parser.add_argument("--postgres", action="store_true", help="the server on a PostgreSQL of its own (Debian's postgresql)")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))
    name = "db_growth_postgres" if args.postgres else "db_growth"
    results = args.results or HERE / "results" / f"{name}.md"

    with tempfile.TemporaryDirectory(prefix="assetline-bench-db-") as tmp:
        root = Path(tmp)
        src, inbox, out, home = root / "src", root / "inbox", root / "out", root / "home"
        make_stills(src, args.assets, w, h, lambda i, w, h: (w + i, h + i))
        if args.postgres:
            from helpers.postgres import postgres_database
        with postgres_database(log_dir=root) if args.postgres else nullcontext() as url:
            env = dict(os.environ) | ({"PREFECT_API_DATABASE_CONNECTION_URL": url} if url else {})
            database = Postgres(url) if url else SQLite(home)
            with served(root, inbox, out, home, env) as client:
                runs, measured = measure(args.assets, src, inbox, client, database)
    file_before, tables_before, events_before, file_after, tables_after, art_total, art_images, events_after = measured
    return report(args, name, results, database.kind, database.file_label, database.tables_label, runs, file_before,
                  tables_before, events_before, file_after, tables_after, art_total, art_images, events_after)  # fmt: skip


def measure(n: int, src: Path, inbox: Path, client, database: SQLite | Postgres) -> tuple[list[dict], tuple]:
    """The database before and after `n` stills from `src` are moved into the served inbox and their runs end."""
    time.sleep(5)
    file_before, tables_before, events_before = database.size(), database.tables(), event_bytes(database)
    for path in sorted(src.iterdir()):
        shutil.move(str(path), inbox / path.name)
    wait(f"{n} runs to finish", lambda: sum(r["state_type"] in FINAL for r in all_runs(client, "process-asset")) >= n)
    time.sleep(10)  # the last logs and events reach the database
    runs = all_runs(client, "process-asset")
    file_after, tables_after = database.size(), database.tables()
    art_total, art_images = artifact_bytes(database)
    events_after = event_bytes(database)
    return runs, (file_before, tables_before, events_before, file_after, tables_after, art_total, art_images, events_after)


def report(args, name, results, kind, file_label, tables_label, runs, file_before, tables_before, events_before,
           file_after, tables_after, art_total, art_images, events_after) -> int:  # fmt: skip

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
        f"{kind}, default recipe: `python benchmarks/bench_db_growth.py --assets {n} --size {args.size}"
        f"{' --postgres' if args.postgres else ''}`",
        "",
        "| | per asset |",
        "|---|---:|",
        f"| {file_label} | {(file_after - file_before) / n / 1024:.0f} KiB |",
        f"| {tables_label} | {pages / n / 1024:.0f} KiB |",
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
    write_fragment(results, text, name, targets, figures, problems=[] if completed == n else [f"{n - completed} runs not Completed"])
    return 0 if completed == n else 1


if __name__ == "__main__":
    sys.exit(main())
