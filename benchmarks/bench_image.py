#!/usr/bin/env python
"""Benchmark: `assetline run` on N photos vs a bare rembg + ncnn loop, in the same run.

    .venv/bin/python benchmarks/bench_image.py                      # 20 photos, 1152x864 (about 1 MP)
    .venv/bin/python benchmarks/bench_image.py --count 3 --size 512x384   # smoke test

What it does, in this order (everything under benchmarks/work/, which git ignores):

1. Makes N distinct JPEGs (quality 92) from the photos scikit-image ships
   (no download), cropped, mirrored and resized so every file differs.
2. Warm-up (not timed in the figures): one tiny image through `assetline run`,
   so the Prefect database under benchmarks/work/prefect-home exists and the
   page cache holds the libraries for both contenders.
Steps 3 to 5 are one round, repeated (--rounds, default 2).

3. Bare loop, in its own process: one rembg session (rembg's own u2netp
   session class, model file from the assetline cache through U2NET_HOME, with
   downloading made impossible), one ncnn Net for realesr-animevideov3-x2
   (CPU, os.cpu_count() threads), and per image: decode, rembg cutout, ESRGAN
   x2 of the RGB tiled exactly like assetline (256 px tiles, 16 px overlap:
   assetline's own `run_tiled` from `assetline.imaging.tiling`, which imports
   no Prefect), alpha resized with Lanczos, both PNGs saved (compress_level=4).
4. `assetline run INPUTS --out OUT`, default recipe, PREFECT_API_URL unset:
   Prefect's temporary local server starts and stops inside the timing.
5. The same command again (the rerun): every output must be left untouched
   (mtimes compared) and every asset reported up to date.
6. Optional (on by default, --no-warm-server skips it): a Prefect server
   started beforehand, then `assetline run` into a fresh folder against it.
7. Optional (--diagnose): one more pass with `--set run.concurrency=1`.

Wall time is the whole process, interpreter start to exit, for every
contender. Before each measurement the script waits (up to --quiet-wait
seconds) for the rest of the machine to be nearly idle, and it records how
busy the rest of the machine was during the measurement ("other load"); the
headline wall times are the mean of each contender's quiet rounds.

Peak memory is reported two ways: the largest single process (`ru_maxrss`
from wait4 on that child) and the peak sum of RSS over the child's whole
process tree (sampled from /proc every 0.2 s; this includes
Prefect's server subprocess).

Results: printed, and written to benchmarks/results/image.md (--results to change),
with its key figures and targets in image.json beside it (benchmarks/report.py
assembles RESULTS.md from these) and the raw figures in benchmarks/work/results.json.
There are no timing assertions: the exit status is 1 only when something
failed (a non-zero exit, missing outputs, a rerun that touched outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"

# Colour photos scikit-image ships inside its wheel (no network needed).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
CROP_SCALES = (1.0, 0.82, 0.68, 0.9, 0.75)
TILE, OVERLAP, SCALE = 256, 16, 2  # assetline's defaults (recipe image.upscale)
PNG_LEVEL = 4  # assetline.tasks._common.PNG_COMPRESS_LEVEL
SERVER_SETTLE_S = 10  # wait after the pre-started server is healthy, before timing against it


# --------------------------------------------------------------------------- inputs


def _photo(name: str):
    from PIL import Image
    from skimage import data

    arr = data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
    return Image.fromarray(arr).convert("RGB")


def make_inputs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """`count` distinct JPEGs of exactly `size`, from the shipped photos (crop, mirror, resize)."""
    from PIL import Image, ImageOps

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    width, height = size
    aspect = width / height
    sources = {name: _photo(name) for name in PHOTOS}
    made, digests = [], set()
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        variant = i // len(PHOTOS)
        src = sources[name]
        sw, sh = src.size
        # the largest crop of the target aspect, shrunk by this variant's factor, placed off-centre
        cw, ch = (sw, sw / aspect) if sw / sh < aspect else (sh * aspect, sh)
        factor = CROP_SCALES[variant % len(CROP_SCALES)]
        cw, ch = max(16, int(cw * factor)), max(16, int(ch * factor))
        fx, fy = (0.5, 0.5) if variant == 0 else ((i * 0.37) % 1.0, (i * 0.61) % 1.0)
        x0, y0 = round((sw - cw) * fx), round((sh - ch) * fy)
        img = src.crop((x0, y0, x0 + cw, y0 + ch))
        if variant % 2:
            img = ImageOps.mirror(img)
        if variant % 4 == 3:
            img = ImageOps.flip(img)
        img = img.resize((width, height), Image.Resampling.LANCZOS)
        path = folder / f"photo-{i:02d}-{name}.jpg"
        img.save(path, format="JPEG", quality=92)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in digests:
            raise RuntimeError(f"{path.name} duplicates another input; change the variant scheme")
        digests.add(digest)
        made.append(path)
    return made


# --------------------------------------------------------------------------- the bare loop (own process)


def bare_worker(inputs: Path, out: Path) -> None:
    """One process, one rembg session, one ncnn Net, a plain loop. Prints one JSON line."""
    t_start = time.perf_counter()
    omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")  # libgomp (in ncnn's wheel) reads it when loaded
    import resource

    import ncnn
    import numpy as np
    import onnxruntime as ort
    import pooch
    from PIL import Image

    from assetline import models
    from assetline.imaging.tiling import run_tiled

    u2net_home = models.require("u2netp")
    esr_dir = models.require("realesr-animevideov3")
    os.environ["U2NET_HOME"] = str(u2net_home)

    def no_download(*args, **kwargs):
        raise RuntimeError(f"rembg tried to download a model ({args[:1]}): U2NET_HOME is not being used")

    pooch.retrieve = no_download  # rembg calls pooch.retrieve only when no local copy is found
    import rembg
    from rembg import new_session, remove
    from rembg.sessions.u2netp import U2netpSession

    found = U2netpSession.resolve_existing("u2netp.onnx")
    if found is None or Path(found).resolve() != (u2net_home / "u2netp.onnx").resolve():
        raise RuntimeError(f"rembg would not use {u2net_home / 'u2netp.onnx'} (found {found})")
    session = new_session("u2netp", providers=["CPUExecutionProvider"])

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = os.cpu_count() or 1
    net.load_param(str(esr_dir / f"realesr-animevideov3-x{SCALE}.param"))
    net.load_model(str(esr_dir / f"realesr-animevideov3-x{SCALE}.bin"))
    if "prefect" in sys.modules:  # the bare loop must not pay for an import a hand-written script would not make
        raise RuntimeError("the bare loop imported Prefect: assetline.imaging must stay Prefect-free")
    tiled_from = f"{run_tiled.__module__}.run_tiled"
    t_ready = time.perf_counter()

    rows = []
    for path in sorted(inputs.glob("*.jpg")):
        t0 = time.perf_counter()
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        t1 = time.perf_counter()
        cutout = remove(rgb, session=session)
        t2 = time.perf_counter()
        big = Image.fromarray(run_tiled(net, np.asarray(rgb), SCALE, TILE, OVERLAP))
        big.putalpha(cutout.getchannel("A").resize(big.size, Image.Resampling.LANCZOS))
        t3 = time.perf_counter()
        dest = out / path.stem
        dest.mkdir(parents=True, exist_ok=True)
        cutout.save(dest / "cutout.png", format="PNG", compress_level=PNG_LEVEL)
        big.save(dest / "upscaled.png", format="PNG", compress_level=PNG_LEVEL)
        t4 = time.perf_counter()
        rows.append({"name": path.name, "decode": t1 - t0, "rembg": t2 - t1, "esrgan": t3 - t2, "save": t4 - t3})
    t_end = time.perf_counter()
    print(
        "BARE_JSON "
        + json.dumps(
            {
                "setup_s": t_ready - t_start,
                "loop_s": t_end - t_ready,
                "images": rows,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "providers": session.inner_session.get_providers(),
                "ort_threads": ort.SessionOptions().intra_op_num_threads,
                "ncnn_threads": net.opt.num_threads,
                "omp_wait_policy": omp_wait_policy,
                "tiling": tiled_from,
                "rembg_model_file": str(found),
                "rembg_version": getattr(rembg, "__version__", "?"),
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- measuring a child process


def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants, sampled every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb, self.peak_procs = 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            parents = _ppid_map()
            tree, frontier = {self.pid}, [self.pid]
            while frontier:
                p = frontier.pop()
                kids = [c for c, pp in parents.items() if pp == p and c not in tree]
                tree.update(kids)
                frontier.extend(kids)
            total = sum(_rss_kb(p) for p in tree)
            if total > self.peak_kb:
                self.peak_kb, self.peak_procs = total, len(tree)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _busy_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


QUIET_CORES = 0.25  # "quiet": the rest of the machine keeps fewer cores than this busy


def wait_for_quiet(max_wait_s: float) -> float:
    """Wait (at most `max_wait_s`) until the machine has been nearly idle for 3 s; returns the seconds waited."""
    t0 = time.perf_counter()
    while True:
        b0 = _busy_cpu_s()
        time.sleep(3)
        if (_busy_cpu_s() - b0) / 3 < QUIET_CORES or time.perf_counter() - t0 >= max_wait_s:
            return time.perf_counter() - t0 - 3


QUIET_WAIT_S = 0.0  # set from --quiet-wait


def run_measured(label: str, cmd: list[str], env: dict, logs: Path) -> dict:
    """Run `cmd`, timing it whole, its peak memory measured; stdout/stderr kept under `logs`.

    Also notes the CPU time the child (and its reaped descendants) used, and
    how busy the rest of the machine was meanwhile (`other_cores`: average
    cores busy with anything but this child), to flag noisy measurements.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{label}.stdout", logs / f"{label}.stderr"
    waited = wait_for_quiet(QUIET_WAIT_S) if QUIET_WAIT_S > 0 else 0.0
    if waited > 1:
        print(f"[bench] {label}: waited {waited:.0f} s for the machine to be quiet", file=sys.stderr, flush=True)
    print(f"[bench] {label}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    started_utc = datetime.now(timezone.utc)
    busy0 = _busy_cpu_s()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop()
    busy = _busy_cpu_s() - busy0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    result = {
        "label": label,
        "waited_s": waited,
        "rc": proc.returncode,
        "wall_s": wall,
        "cpu_s": cpu,
        "other_cores": max(0.0, busy - cpu) / wall if wall > 0 else 0.0,
        "maxrss_kb": usage.ru_maxrss,
        "tree_peak_kb": sampler.peak_kb,
        "tree_peak_procs": sampler.peak_procs,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
        "started_utc": started_utc,
        "ended_utc": datetime.now(timezone.utc),
    }
    print(
        f"[bench] {label}: exit {result['rc']}, {wall:.1f} s wall, {cpu:.1f} s CPU, "
        f"other load {result['other_cores']:.2f} cores",
        file=sys.stderr,
        flush=True,
    )
    return result


def leftover_servers(prefect_home: Path) -> list[int]:
    """Prefect API servers still running with this benchmark's private PREFECT_HOME (so started by it)."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            if b"prefect.server.api.server:create_app" not in cmdline and b"prefect\0server\0start" not in cmdline:
                continue
            if marker in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_leftover_servers(prefect_home: Path) -> list[int]:
    """Stop (by pid) the servers `leftover_servers` finds, so they cannot disturb the next measurement."""
    import signal

    pids = leftover_servers(prefect_home)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if pids:
        print(f"[bench] stopped {len(pids)} Prefect server(s) left running: {pids}", file=sys.stderr, flush=True)
    return pids


# --------------------------------------------------------------------------- reading what assetline did


def file_stamps(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def summary_line(stdout: str) -> str:
    lines = [ln.strip() for ln in stdout.splitlines() if "up to date" in ln and "failed" in ln]
    return lines[-1] if lines else "(no summary line)"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def step_times(out: Path) -> dict:
    """Per-step durations and in-flow spans, from the provenance sidecars of every asset."""
    rembg_s, upscale_s, spans = [], [], []
    for sidecar in sorted(out.glob("*/upscaled.png.provenance.json")):
        m = json.loads(sidecar.read_text())
        steps = {s["name"]: s for s in m["steps"]}
        rb, up = steps["remove_background"], steps["upscale"]
        rembg_s.append((_ts(rb["ended_at"]) - _ts(rb["started_at"])).total_seconds())
        upscale_s.append((_ts(up["ended_at"]) - _ts(up["started_at"])).total_seconds())
        spans.append((_ts(m["created_at"]) - _ts(rb["started_at"])).total_seconds())
    n = len(rembg_s)
    if not n:
        return {}
    return {
        "n": n,
        "remove_background": sum(rembg_s) / n,
        "upscale": sum(upscale_s) / n,
        "steps_to_last_sidecar": sum(spans) / n,
    }


def flow_runs(prefect_home: Path, since: datetime, until: datetime) -> dict:
    """Flow-run timings from Prefect's own database (only where it is the SQLite one here)."""
    db = prefect_home / "prefect.db"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        rows = con.execute(
            "SELECT start_time, end_time FROM flow_run WHERE start_time IS NOT NULL AND end_time IS NOT NULL"
        ).fetchall()
        con.close()
    except sqlite3.Error as exc:
        return {"error": str(exc)}

    def parse(value) -> datetime:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)

    runs = [(parse(a), parse(b)) for a, b in rows]
    runs = [(a, b) for a, b in runs if since <= a <= until]
    if not runs:
        return {}
    first, last = min(a for a, _ in runs), max(b for _, b in runs)
    return {
        "n": len(runs),
        "mean_s": sum((b - a).total_seconds() for a, b in runs) / len(runs),
        "to_first_start_s": (first - since).total_seconds(),
        "after_last_end_s": (until - last).total_seconds(),
        "span_s": (last - first).total_seconds(),
    }


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    quota = None
    try:
        q, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        quota = None if q == "max" else int(q) / int(period)
    except (OSError, ValueError):
        pass

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_quota": quota,
        "ram_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {n: v(n) for n in ("assetline", "rembg", "onnxruntime", "ncnn", "prefect", "pillow", "numpy")},
    }


def package_state() -> dict:
    """Which assetline was measured: the git commit, files changed under assetline/, and a digest of its source."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "assetline").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "assetline").splitlines()]
    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return {"commit": commit, "dirty": dirty, "source_sha256": digest.hexdigest()}


def state_line(state: dict) -> str:
    dirty = f", uncommitted changes in {', '.join(state['dirty'])}" if state["dirty"] else ""
    return f"assetline at commit {state['commit']}{dirty} (source digest {state['source_sha256'][:12]})"


def machine_line(m: dict) -> str:
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)" if m["usable_cores"] != m["cores"] else "")
    if m["cpu_quota"]:
        cores += f", cgroup quota {m['cpu_quota']:g} CPUs"
    ram = f"{m['ram_gib']:.0f} GiB RAM" if m["ram_gib"] else "RAM unknown"
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"{m['cpu']}, {cores}, {ram}, {m['os']}, Python {m['python']}; {vers}"


# --------------------------------------------------------------------------- the benchmark


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assetline_cmd() -> list[str]:
    script = Path(sys.executable).parent / "assetline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "assetline.cli"]


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="number of photos (default 20)")
    parser.add_argument("--size", default="1152x864", help="photo size WxH (default 1152x864, about 1 MP)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of bare, assetline, rerun (default 2)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "image.md",
                        help="markdown file to write; its key figures go to the .json beside it")  # fmt: skip
    parser.add_argument("--target", type=float, default=1.10,
                        help="the ratio to meet (default 1.10, a batch of 20 x 1 MP; 1.5 for one still)")  # fmt: skip
    parser.add_argument("--section", default="image", help="the RESULTS.md section it fills (default image)")
    parser.add_argument("--no-warm-server", action="store_true", help="skip the pass against an already-running server")
    parser.add_argument("--diagnose", action="store_true", help="also run assetline with run.concurrency=1")
    parser.add_argument(
        "--quiet-wait", type=float, default=300, metavar="S",
        help="before each measurement wait up to S seconds for other load to drop below "
        f"{QUIET_CORES} cores (default 300; 0: don't wait)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global QUIET_WAIT_S
    QUIET_WAIT_S = max(0.0, args.quiet_wait)
    try:
        width, height = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WxH, got {args.size!r}")
    if args.count < 1 or args.rounds < 1 or width < 32 or height < 32:
        parser.error("need --count >= 1, --rounds >= 1 and a size of at least 32x32")

    bench_t0 = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    mach = machine()
    state_before = package_state()
    inputs, logs = WORK / "inputs", WORK / "logs"
    prefect_home = WORK / "prefect-home"
    for d in WORK.glob("out-*"):
        shutil.rmtree(d, ignore_errors=True)
    for d in ("logs", "warmup"):
        shutil.rmtree(WORK / d, ignore_errors=True)
    prefect_home.mkdir(parents=True, exist_ok=True)
    stop_leftover_servers(prefect_home)  # from an interrupted earlier benchmark

    print(f"[bench] making {args.count} photos of {width}x{height} in {inputs}", file=sys.stderr, flush=True)
    photos = make_inputs(inputs, args.count, (width, height))
    input_mb = sum(p.stat().st_size for p in photos) / 1e6

    base_env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ASSETLINE_RECIPE")}
    base_env["PREFECT_HOME"] = str(prefect_home)
    base_env.setdefault("COLUMNS", "200")
    cli = _assetline_cmd()
    problems: list[str] = []
    leaks: list[str] = []

    def assetline(label: str, out: Path, env: dict, *extra: str, source: Path = inputs) -> dict:
        result = run_measured(label, [*cli, "run", str(source), "--out", str(out), *extra], env, logs)
        left = stop_leftover_servers(prefect_home)
        if left:
            leaks.append(f"{label}: {len(left)}")
        result["leftover_servers"] = len(left)
        return result

    # warm-up: the Prefect database exists, the libraries are in the page cache
    warm_in = WORK / "warmup" / "in"
    make_inputs(warm_in, 1, (96, 72))
    warm_result = assetline("warmup", WORK / "warmup" / "out", base_env, source=warm_in)
    if warm_result["rc"] != 0:
        problems.append(f"warm-up `assetline run` exited {warm_result['rc']} (see {logs}/warmup.stderr)")

    rounds = []
    for k in range(1, args.rounds + 1):
        r: dict = {"k": k}
        bare_out = WORK / f"out-bare-{k}"
        r["bare"] = run_measured(
            f"bare-{k}", [sys.executable, str(Path(__file__).resolve()), "_bare", str(inputs), str(bare_out)],
            base_env, logs,
        )  # fmt: skip
        r["bare_info"] = {}
        for line in r["bare"]["stdout"].splitlines():
            if line.startswith("BARE_JSON "):
                r["bare_info"] = json.loads(line[len("BARE_JSON ") :])
        n_bare = len(r["bare_info"].get("images", []))
        if r["bare"]["rc"] != 0 or n_bare != args.count:
            problems.append(f"round {k}: bare loop exited {r['bare']['rc']} with {n_bare} images")

        al_out = WORK / f"out-assetline-{k}"
        r["al"] = assetline(f"assetline-{k}", al_out, base_env)
        cutouts, upscales = len(list(al_out.glob("*/cutout.png"))), len(list(al_out.glob("*/upscaled.png")))
        if r["al"]["rc"] != 0:
            problems.append(f"round {k}: `assetline run` exited {r['al']['rc']}: {summary_line(r['al']['stdout'])}")
        if cutouts != args.count or upscales != args.count:
            problems.append(
                f"round {k}: `assetline run` made {cutouts} cutouts and {upscales} upscales, not {args.count}"
            )
        r["al_steps"] = step_times(al_out)
        r["al_flows"] = flow_runs(prefect_home, r["al"]["started_utc"], r["al"]["ended_utc"])

        before = file_stamps(al_out)
        r["rerun"] = assetline(f"rerun-{k}", al_out, base_env)
        after = file_stamps(al_out)
        r["untouched"] = before == after
        r["rerun_summary"] = summary_line(r["rerun"]["stdout"])
        if r["rerun"]["rc"] != 0:
            problems.append(f"round {k}: rerun exited {r['rerun']['rc']}: {r['rerun_summary']}")
        if not r["untouched"]:
            changed = sorted(x for x in before.keys() | after.keys() if before.get(x) != after.get(x))
            problems.append(f"round {k}: rerun touched {len(changed)} files, e.g. {changed[:3]}")
        if f"0 done, {args.count} up to date, 0 failed" not in r["rerun_summary"]:
            problems.append(f"round {k}: rerun did not find every asset up to date: {r['rerun_summary']}")
        rounds.append(r)

    # against a server that is already up
    warm_srv = None
    if not args.no_warm_server:
        os.environ["PREFECT_HOME"] = str(prefect_home)
        from assetline.server import prefect_server

        t0 = time.perf_counter()
        with prefect_server(_free_port()):
            server_start_s = time.perf_counter() - t0
            time.sleep(SERVER_SETTLE_S)  # "already running": past its own start-up work
            env = {**base_env, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
            ws_out = WORK / "out-assetline-server-up"
            warm_srv = run_measured("assetline-server-up", [*cli, "run", str(inputs), "--out", str(ws_out)], env, logs)
        left = stop_leftover_servers(prefect_home)
        if left:
            leaks.append(f"assetline-server-up: {len(left)}")
        warm_srv["server_start_s"] = server_start_s
        warm_srv["steps"] = step_times(ws_out)
        if warm_srv["rc"] != 0:
            problems.append(f"`assetline run` (server up) exited {warm_srv['rc']}: {summary_line(warm_srv['stdout'])}")

    # diagnosis: one asset at a time
    diag = None
    if args.diagnose:
        d_out = WORK / "out-assetline-concurrency1"
        diag = assetline("assetline-concurrency1", d_out, base_env, "--set", "run.concurrency=1")
        diag["steps"] = step_times(d_out)
        diag["flows"] = flow_runs(prefect_home, diag["started_utc"], diag["ended_utc"])
        if diag["rc"] != 0:
            problems.append(f"`assetline run --set run.concurrency=1` exited {diag['rc']}")

    total_s = time.perf_counter() - bench_t0
    states = (state_before, package_state())
    key: dict = {}
    report = render(args, (width, height), mach, input_mb, warm_result, rounds, warm_srv, diag, leaks, problems,
                    started_at, total_s, states, key)  # fmt: skip
    from report import target, write_fragment  # benchmarks/report.py

    targets = [
        target("per-image ratio, `assetline run` / bare loop", key["ratio"], "<=", args.target,
               detail=f"{key['assetline_s']:.1f} s vs {key['bare_s']:.1f} s for {args.count} images"),
    ]
    if args.count >= RERUN_TARGET_FROM:  # a batch's rerun; one file's is mostly the interpreter starting
        targets.append(target("rerun speedup, first run / rerun", key["speedup"], ">=", 20, measured=f"{key['speedup']:.1f}×",
                              detail=f"rerun {key['rerun_s']:.2f} s"))  # fmt: skip
    if key.get("server_up_ratio") is not None:
        targets.append(target("per-image ratio, Prefect server already running", key["server_up_ratio"]))
    disturbed = [n for n, q in zip(("bare loop", "assetline run", "rerun"), key["quiet_rounds"]) if not q]
    notes = [f"no quiet round for {', '.join(disturbed)}: its figure is from a disturbed machine"] if disturbed else []
    write_fragment(args.results, report, args.section, targets, key, problems=problems, notes=notes)
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": mach, "package": states, "rounds": rounds,
           "server_up": warm_srv, "concurrency1": diag, "warmup": warm_result, "leftover_servers": leaks,
           "problems": problems}  # fmt: skip
    (WORK / "results.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    print(report)
    print(f"[bench] written to {args.results}", file=sys.stderr)
    return 1 if problems else 0


RERUN_TARGET_FROM = 10  # photos: below this the rerun speedup is reported, not held to its target


def render(args, size, mach, input_mb, warm, rounds, warm_srv, diag, leaks, problems, started_at, total_s,
           states, key: dict | None = None) -> str:  # fmt: skip
    n = args.count
    w, h = size
    mark = lambda ok: "met" if ok else "**missed**"  # noqa: E731

    def agg(key: str) -> dict:
        """One column. Wall time: the mean of the quiet rounds (assetline's own variation, such as Prefect's
        back-offs, is part of its cost); only when no round was quiet, the best one (outside noise only adds
        time). CPU and load: means; memory: the largest seen."""
        rs = [r[key] for r in rounds]
        quiet = [x for x in rs if x["other_cores"] <= QUIET_CORES]
        return {
            "wall_s": _mean([x["wall_s"] for x in quiet]) if quiet else min(x["wall_s"] for x in rs),
            "basis": f"mean of {len(quiet)} quiet" if quiet else "best of 0 quiet",
            "quiet": len(quiet),
            "wall_best_s": min(x["wall_s"] for x in rs),
            "wall_mean_s": _mean([x["wall_s"] for x in rs]),
            "cpu_s": _mean([x["cpu_s"] for x in rs]),
            "other_cores": _mean([x["other_cores"] for x in rs]),
            "maxrss_kb": max(x["maxrss_kb"] for x in rs),
            "tree_peak_kb": max(x["tree_peak_kb"] for x in rs),
        }

    bare_c, al_c, rerun_c = agg("bare"), agg("al"), agg("rerun")
    bare_wall = bare_c["wall_s"]
    ratio, speedup = al_c["wall_s"] / bare_wall, al_c["wall_s"] / rerun_c["wall_s"]
    best_ratio = al_c["wall_best_s"] / bare_c["wall_best_s"]
    best_speedup = al_c["wall_best_s"] / rerun_c["wall_best_s"]
    if key is not None:  # the headline figures, for the .json beside the report
        key.update(ratio=ratio, speedup=speedup, bare_s=bare_wall, assetline_s=al_c["wall_s"], rerun_s=rerun_c["wall_s"],
                   best_ratio=best_ratio, best_speedup=best_speedup, quiet_rounds=[bare_c["quiet"], al_c["quiet"], rerun_c["quiet"]],
                   server_up_ratio=warm_srv["wall_s"] / bare_wall if warm_srv else None, count=args.count)  # fmt: skip
    cols = [("bare loop", bare_c), ("`assetline run`", al_c), ("rerun", rerun_c)]
    if warm_srv:
        cols.append(("`assetline run`, server already up", warm_srv))
    if diag:
        cols.append(("`assetline run`, concurrency 1", diag))
    head = "| | " + " | ".join(c for c, _ in cols) + " |\n|---|" + "---:|" * len(cols) + "\n"
    row = lambda label, f: f"| {label} | " + " | ".join(f(x) for _, x in cols) + " |\n"  # noqa: E731

    o = ["# Image benchmark: `assetline run` vs a bare rembg + ncnn loop\n\n"]
    o.append(f"{n} photos of {w}x{h} ({w * h / 1e6:.2f} MP, JPEG q92, {input_mb:.1f} MB in all), default recipe "
             f"(u2netp cutout, realesr-animevideov3 x2 in 256 px tiles, CPU, 2 assets at a time).  \n")  # fmt: skip
    flags = "".join((
        f" --rounds {args.rounds}" if args.rounds != 2 else "",
        f" --quiet-wait {args.quiet_wait:g}" if args.quiet_wait != 300 else "",
        " --no-warm-server" if args.no_warm_server else "",
        " --diagnose" if args.diagnose else "",
    ))  # fmt: skip
    o.append(f"Run {started_at:%Y-%m-%d %H:%M} UTC; the whole benchmark took {total_s / 60:.1f} min: "
             f"`python benchmarks/bench_image.py --count {n} --size {w}x{h}{flags}`\n\n")  # fmt: skip
    o.append(f"**Machine:** {machine_line(mach)}  \n")
    o.append(f"**Measured:** {state_line(states[0])}\n\n")
    if states[0]["source_sha256"] != states[1]["source_sha256"]:
        o.append(f"**Warning:** assetline's source changed while the benchmark ran (at the end: "
                 f"{state_line(states[1])}); the runs may have measured different code.\n\n")  # fmt: skip

    o.append("## Figures\n\n")
    o.append("| target | measured | |\n|---|---:|---|\n")
    o.append(f"| per-image ratio, assetline / bare (≤ {args.target:g}) | {ratio:.2f} | {mark(ratio <= args.target)} |\n")
    if args.count >= RERUN_TARGET_FROM:
        o.append(f"| rerun speedup, first run / rerun (≥ 20×) | {speedup:.1f}× | {mark(speedup >= 20)} |\n")
    o.append("\n")
    named = (("bare loop", bare_c), ("assetline run", al_c), ("rerun", rerun_c))
    disturbed = [name for name, c in named if not c["quiet"]]
    if disturbed:
        o.append(f"**Warning:** no round of {', '.join(disturbed)} ran on a quiet machine (other load above "
                 f"{QUIET_CORES} cores, see below): its figure is the best disturbed round and is not reliable. "
                 f"Run again on a quiet machine.\n\n")  # fmt: skip
    o.append(f"Wall times are the mean of each contender's quiet rounds (other load at most {QUIET_CORES} cores): "
             f"{bare_c['quiet']}, {al_c['quiet']} and {rerun_c['quiet']} of {len(rounds)} for the bare loop, "
             f"`assetline run` and the rerun. From each one's best round instead: ratio {best_ratio:.2f}, speedup "
             f"{best_speedup:.1f}×. Per round further down.\n\n")  # fmt: skip
    o.append(head)
    o.append(row("wall time, s (whole process)", lambda x: f"{x['wall_s']:.1f}"))
    o.append(row("per image, s", lambda x: f"{x['wall_s'] / n:.2f}"))
    o.append(row("wall time / bare loop's", lambda x: f"{x['wall_s'] / bare_wall:.2f}"))
    o.append(row("wall time, s: best round / mean of all rounds",
                 lambda x: f"{x.get('wall_best_s', x['wall_s']):.1f} / {x.get('wall_mean_s', x['wall_s']):.1f}"))
    o.append(row("CPU time (user + sys), s", lambda x: f"{x['cpu_s']:.1f}"))
    o.append(row("peak RSS, largest process, MiB", lambda x: _mib(x["maxrss_kb"])))
    o.append(row("peak RSS, process tree, MiB", lambda x: _mib(x["tree_peak_kb"])))
    o.append(row("other load on the machine meanwhile, cores", lambda x: f"{x['other_cores']:.2f}"))
    o.append("\n")

    o.append(f"Per round (other load: average cores busy with anything else meanwhile; above {QUIET_CORES} "
             "the measurement was disturbed):\n\n")  # fmt: skip
    o.append("| round | bare, s (other load) | assetline, s (other load) | ratio | rerun, s | speedup "
             "| rerun left outputs untouched |\n|---:|---:|---:|---:|---:|---:|---|\n")  # fmt: skip
    for r in rounds:
        o.append(f"| {r['k']} | {r['bare']['wall_s']:.1f} ({r['bare']['other_cores']:.2f}) | "
                 f"{r['al']['wall_s']:.1f} ({r['al']['other_cores']:.2f}) | "
                 f"{r['al']['wall_s'] / r['bare']['wall_s']:.2f} | {r['rerun']['wall_s']:.2f} | "
                 f"{r['al']['wall_s'] / r['rerun']['wall_s']:.1f}× | "
                 f"{'yes' if r['untouched'] else '**no**'} (`{r['rerun_summary']}`) |\n")  # fmt: skip
    o.append("\n")

    o.append("## Where the time goes\n\n")
    for r in rounds:
        info = r["bare_info"]
        if info.get("images"):
            imgs = info["images"]
            m = lambda k: _mean([i[k] for i in imgs])  # noqa: E731
            loop = info["loop_s"] / len(imgs)
            rest = r["bare"]["wall_s"] - info["setup_s"] - info["loop_s"]
            o.append(f"- Round {r['k']}, bare loop: {info['setup_s']:.1f} s imports and sessions, then {loop:.2f} s "
                     f"per image (decode {m('decode'):.3f}, rembg {m('rembg'):.2f}, ESRGAN x2 + alpha "
                     f"{m('esrgan'):.2f}, both PNGs saved {m('save'):.2f}); interpreter start and exit "
                     f"{rest:.1f} s.\n")  # fmt: skip
        st, fl = r["al_steps"], r["al_flows"]
        if st:
            o.append(f"- Round {r['k']}, `assetline run` (2 assets at a time, so steps share the cores): per asset, "
                     f"remove_background step {st['remove_background']:.2f} s, upscale step {st['upscale']:.2f} s, "
                     f"first step start to last sidecar written {st['steps_to_last_sidecar']:.2f} s (provenance "
                     f"sidecars)")  # fmt: skip
            if fl.get("n"):
                o.append(f"; Prefect flow runs {fl['mean_s']:.2f} s each, all {fl['n']} within {fl['span_s']:.1f} s; "
                         f"process start to the first flow run's start {fl['to_first_start_s']:.1f} s; last flow "
                         f"run's end to process exit {fl['after_last_end_s']:.1f} s")  # fmt: skip
            o.append(".\n")
    infos = [r["bare_info"] for r in rounds if r["bare_info"].get("images")]
    if infos:
        o.append(f"- Bare loop set-up: ncnn threads {infos[0]['ncnn_threads']} (OMP_WAIT_POLICY "
                 f"{infos[0].get('omp_wait_policy', '?')} when ncnn loaded), onnxruntime {infos[0]['providers']}, "
                 f"model file {infos[0]['rembg_model_file']}; tiling: {infos[0]['tiling']}.\n")  # fmt: skip
    if warm_srv:
        o.append(f"- Server already up: it took {warm_srv['server_start_s']:.1f} s to become healthy, then "
                 f"{SERVER_SETTLE_S} s were let pass (neither is counted in that column).\n")  # fmt: skip
    if diag and diag.get("steps"):
        s_ = diag["steps"]
        o.append(f"- Concurrency 1: remove_background {s_['remove_background']:.2f} s, upscale "
                 f"{s_['upscale']:.2f} s, first step start to last sidecar {s_['steps_to_last_sidecar']:.2f} s "
                 f"per asset")  # fmt: skip
        if diag.get("flows", {}).get("n"):
            f_ = diag["flows"]
            o.append(f"; flow runs {f_['mean_s']:.2f} s each, process start to the first flow run "
                     f"{f_['to_first_start_s']:.1f} s, last flow run's end to exit {f_['after_last_end_s']:.1f} s")
        o.append(".\n")
    o.append(f"- Warm-up (one 96x72 image, not in the figures): {warm['wall_s']:.1f} s.\n")
    if leaks:
        o.append(f"- Prefect temporary servers still running after `assetline run` had exited (stopped by the "
                 f"benchmark before the next measurement): {', '.join(leaks)}.\n")  # fmt: skip
    o.append("\n")

    o.append("## How it was measured\n\n")
    o.append(
        "Every contender is a separate process, timed from launch to exit. Order: a warm-up `assetline run` of one "
        "tiny image (creates the Prefect database, fills the page cache), then per round the bare loop, "
        "`assetline run` into a fresh folder, and the rerun into that folder; then the optional passes. The bare "
        "loop is one process with one rembg session (u2netp, rembg's own session class, model file from the "
        "assetline cache, downloads made impossible) and one ncnn Net (realesr-animevideov3-x2, CPU, all cores), "
        "tiling with assetline's own `run_tiled`; it does not import Prefect. `assetline run` uses the default "
        "recipe with PREFECT_API_URL unset, so Prefect's temporary server starts and stops inside its time "
        "(PREFECT_HOME: benchmarks/work/prefect-home). CPU time is the child's and its reaped descendants'. Peak "
        "RSS: 'largest process' is `ru_maxrss` from wait4 on the child (the largest of it and its reaped "
        "descendants); 'process tree' is the peak of the summed RSS of the child and all its descendants "
        "(Prefect's server included), sampled every 0.2 s. 'Other load' is the machine's busy CPU time during "
        "the run minus the child's, per second of wall time: well above 0 means something else competed for "
        "the cores and the figure is noisy.\n"
    )
    if problems:
        o.append("\n## Problems\n\n" + "".join(f"- {p}\n" for p in problems))
    return "".join(o)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_bare":
        bare_worker(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
