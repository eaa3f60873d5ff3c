#!/usr/bin/env python
"""Assemble benchmarks/RESULTS.md from the fragments the benchmarks write into benchmarks/results/.

    .venv/bin/python benchmarks/report.py                       # results/*.md -> RESULTS.md
    .venv/bin/python benchmarks/report.py --results DIR --out FILE

Every benchmark writes two files into the results folder: `<name>.md`, its
section of the report (also printed when it runs), and `<name>.json`, its key
figures with their targets (see `target` and `write_fragment` below, which the
benchmarks import). This script reads the JSON for the summary table, so it
never parses markdown, and then copies each markdown section in a fixed order
(image, transcribe, serve, load, signing), headings shifted one level down.

The header describes the machine this script runs on (`make bench` runs it
right after the benchmarks) and the assetline commit; a fragment measured on
another machine or at another commit is flagged. A missing fragment is "not
run" in the summary. Standard library only: it runs without the project's
dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

# name -> title, in the order the report shows them
SECTIONS = {
    "one_still": "One still through the CLI vs a bare rembg + ncnn script, whole processes (`bench_image.py --count 1`)",
    "demo": "`make demo`: each asset delivered, seconds after the server answers (`bench_demo.py`)",
    "image": "Image pipeline vs a bare rembg + ncnn loop, and the rerun (`bench_image.py`)",
    "transcribe": "Transcribe step vs bare faster-whisper, and memory on a 10-minute clip (`bench_transcribe.py`)",
    "serve": "Event-to-run latency and throughput, one worker vs two (`bench_serve.py`)",
    "load": "Load: a burst of stills into the inbox (`bench_load.py`)",
    "signing": "Content Credentials: signing cost (`bench_signing.py`)",
    "faults": "Fault injection: SIGKILL at random moments under run and serve (`bench_faults.py`)",
    "matte": "Matte: the matte step vs bare rembg, memory in the clip's length, flicker (`bench_matte.py`)",
    "footage": "A 10-minute 1080p clip end to end: time to its subtitles, time to video.mp4 (`bench_footage.py`)",
    "scale": "Scale-out: 1 to 3 workers on PostgreSQL and SQLite, API latency, a lost worker (`bench_scale.py`)",
}
# Targets no benchmark measures yet: listed in the summary as such, so a missing figure is seen, not forgotten.
# (benchmark that should measure it, figure, target[, what is known instead])
NOT_YET_MEASURED = [
    ("serve", "small assets under `serve` / the bare libraries on the same files", "≤ 3"),
    ("load", "30 small stills dropped into a served inbox at once / the bare libraries", "(7.3× in issue 14)"),
    ("load", "memory under `serve`, 10 min / 1 min", "≤ 1.1"),
]
PACKAGES = ("assetline", "prefect", "rembg", "onnxruntime", "ncnn", "faster-whisper", "ctranslate2", "c2pa-python")


# --------------------------------------------------------------------------- used by the benchmarks


def git(*args: str) -> str:
    """git's output, trailing newlines removed (leading spaces matter to `status --porcelain`)."""
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.rstrip("\n")
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_state() -> dict:
    """The commit measured and whether the working tree differs from it (untracked files aside)."""
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "dirty": changed}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict:
    """What identifies the machine a figure came from (compared by report.py)."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "node": platform.node()}


def target(figure: str, value: float | None, op: str | None = None, limit: float | None = None, *,
           measured: str | None = None, target_text: str | None = None, detail: str = "") -> dict:  # fmt: skip
    """One row of the summary table.

    `op` is "<=" (value must not exceed `limit`), ">=" (must reach it), "=="
    (must equal it) or None (a figure with no target). `measured` is how the
    value is shown (default: two decimals); `target_text` how the target is
    shown (default: op and limit). `value` None means the figure could not be
    measured (shown as such, and a miss when it has a target).
    """
    if measured is None:
        measured = "not measured" if value is None else f"{value:.2f}"
    if target_text is None and op:
        target_text = f"{'≤' if op == '<=' else '≥' if op == '>=' else '='} {limit:g}"
    return {"figure": figure, "value": value, "op": op, "limit": limit, "measured": measured,
            "target": target_text, "detail": detail}  # fmt: skip


def write_fragment(md_path: Path, markdown: str | None, name: str, targets: list[dict], figures: dict | None = None,
                   command: str = "", problems: list[str] | None = None, notes: list[str] | None = None) -> Path:  # fmt: skip
    """Write a benchmark's section to `md_path` and its key figures to the .json beside it; returns the JSON path.

    `markdown` None: the section is already in `md_path` (written by the benchmark itself); only the JSON is written.
    `problems`: what failed; `notes`: what the reader should know about the figures (a disturbed machine, say).
    Both are listed under the report's summary.
    """
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    if markdown is not None:
        md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n", encoding="utf-8")
    record = {
        "name": name,
        "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(["python", _rel(Path(sys.argv[0])), *sys.argv[1:]]),
        **commit_state(),
        "host": host(),
        "targets": targets,
        "figures": figures or {},
        "problems": problems or [],
        "notes": notes or [],
    }
    json_path = md_path.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    return json_path


# --------------------------------------------------------------------------- the report


def verdict(t: dict) -> str:
    """'met', '**missed** by ...' or '—' for a figure without a target."""
    op, limit, value = t.get("op"), t.get("limit"), t.get("value")
    if not op:
        return "—"
    if value is None:
        return "**missed**: not measured"
    if isinstance(limit, bool) or isinstance(value, bool):
        return "met" if value == limit else "**missed**"
    if op == "<=":
        ok, gap = value <= limit, value - limit
    elif op == ">=":
        ok, gap = value >= limit, limit - value
    else:
        ok, gap = value == limit, abs(value - limit)
    if ok:
        return "met"
    share = gap / abs(limit) if limit else None
    rel = "" if share is None else f" ({share:.0%})" if share >= 0.01 else f" ({share:.1%})"
    over = {"<=": "over", ">=": "short", "==": "off"}[op]
    return f"**missed**, {gap:.2g} {over}{rel}" if gap < 0.1 else f"**missed**, {gap:.2f} {over}{rel}"


def machine() -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    os_name = f"{platform.system()} {platform.release()}"
    try:
        pretty = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        ).get("PRETTY_NAME", "").strip('"')
        if pretty:
            os_name = f"{pretty}, {os_name}"
    except OSError:
        pass
    return {
        **host(),
        "usable_cores": usable,
        "ram_gib": mem,
        "os": os_name,
        "python": platform.python_version(),
        "versions": {n: v(n) for n in PACKAGES},
    }


def shift_headings(text: str, top: int = 2) -> str:
    """Move every markdown heading down so the fragment's highest becomes level `top` (code blocks untouched)."""
    lines, fence = text.splitlines(), False
    levels = []
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"^(#{1,6}) ", line)):
            levels.append(len(m.group(1)))
    shift = top - min(levels) if levels else 0
    out, fence = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        elif re.match(r"^<!-- bench_\w+:(start|end) -->$", line.strip()):
            continue  # bench_signing's markers for updating a section in place
        elif not fence and shift > 0 and (m := re.match(r"^(#{1,6}) ", line)):
            line = "#" * min(6, len(m.group(1)) + shift) + line[len(m.group(1)) :]
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def load_fragments(folder: Path) -> dict[str, dict]:
    found = {}
    for name in SECTIONS:
        md, js = folder / f"{name}.md", folder / f"{name}.json"
        if not md.exists():
            continue
        record = {}
        if js.exists():
            try:
                record = json.loads(js.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                record = {"problems": [f"{js.name} unreadable: {exc}"]}
        found[name] = {"md": md.read_text(encoding="utf-8"), "json": record}
    return found


def render(folder: Path, fragments: dict[str, dict]) -> str:
    m = machine()
    state = commit_state()
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)" if m["usable_cores"] != m["cores"] else "")
    ram = f"{m['ram_gib']:.0f} GiB RAM" if m["ram_gib"] else "RAM unknown"
    dirty = f", **working tree differs from it** ({', '.join(state['dirty'][:8])}{', ...' if len(state['dirty']) > 8 else ''})" if state["dirty"] else ", clean working tree"  # fmt: skip
    o = ["# Benchmark report", ""]
    o.append("Written by `benchmarks/report.py` (run last by `make bench`) from the sections the benchmarks wrote "
             f"into `{_rel(folder)}/`. Where there is a bare-library equivalent (rembg + ncnn, faster-whisper), the "
             "figure is a ratio against it, measured in the same run on the machine below.")  # fmt: skip
    o.append("")
    o.append(f"- **Report written:** {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    o.append(f"- **Machine:** {m['cpu']}, {cores}, {ram}; {m['os']}; Python {m['python']}")
    o.append("- **Packages:** " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    o.append(f"- **assetline commit:** {state['commit']}{dirty}")
    o.append("")

    notes, runs = [], []
    rows = ["| benchmark | figure | target | measured | verdict |", "|---|---|---|---|---|"]
    for name, title in SECTIONS.items():
        frag = fragments.get(name)
        short = title.split(" (`")[0]
        if frag is None:
            rows.append(f"| {name} | {short} | | **not run** | |")
            continue
        rec = frag["json"]
        if not rec:
            rows.append(f"| {name} | {short} | | see its section (no {name}.json) | |")
            continue
        when = rec.get("written_utc", "?")
        h = rec.get("host") or {}
        if h and (h.get("cpu"), h.get("cores"), h.get("node")) != (m["cpu"], m["cores"], m["node"]):
            notes.append(f"`{name}` was measured on another machine ({h.get('cpu')}, {h.get('cores')} cores, "
                         f"host {h.get('node')}), {when}.")  # fmt: skip
        if rec.get("commit") and rec["commit"] != state["commit"]:
            notes.append(f"`{name}` measured commit {rec['commit']}, not {state['commit']} ({when}).")
        elif sorted(rec.get("dirty") or []) != sorted(state["dirty"]):
            changed = ", ".join(rec.get("dirty") or []) or "none"
            notes.append(f"`{name}` was measured with other uncommitted changes than the tree has now (then: {changed}).")
        for p in rec.get("problems") or []:
            notes.append(f"`{name}`, problem: {p}")
        for n in rec.get("notes") or []:
            notes.append(f"`{name}`: {n}")
        runs.append(f"`{name}`: {when.replace('T', ' ').replace('+00:00', ' UTC')}, `{rec.get('command', '?')}`")
        targets = rec.get("targets") or []
        if not targets:
            rows.append(f"| {name} | {short} | | see its section | |")
        for t in targets:
            detail = f" ({t['detail']})" if t.get("detail") else ""
            rows.append(f"| {name} | {t['figure']} | {t.get('target') or ''} | {t['measured']}{detail} | {verdict(t)} |")
    for name, figure, wanted, *known in NOT_YET_MEASURED:
        rows.append(f"| {name} | {figure} | {wanted} | {known[0] if known else '**not measured yet**'} | |")
    o += ["## Summary", ""] + rows + [""]
    if runs:
        o += ["Runs:", ""] + [f"- {r}" for r in runs] + [""]
    if notes:
        o += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    o.append("Each section below says how it was measured and how busy the machine was meanwhile; "
             "figures taken while other work shared the cores are not comparable.")  # fmt: skip
    o.append("")
    for name in SECTIONS:
        if name in fragments:
            o.append(shift_headings(fragments[name]["md"]))
    return "\n".join(o).rstrip("\n") + "\n"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of fragments (default benchmarks/results)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="report to write (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    fragments = load_fragments(args.results)
    text = render(args.results, fragments)
    args.out.write_text(text, encoding="utf-8")
    missing = [n for n in SECTIONS if n not in fragments]
    print(f"[report] {args.out}: {len(fragments)} sections" + (f", not run: {', '.join(missing)}" if missing else ""),
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
