#!/usr/bin/env python
"""Fault injection: SIGKILL at a random moment, then the next run. Nothing lost, nothing stuck, nothing half-made.

    .venv/bin/python benchmarks/bench_faults.py                    # 30 trials under run, 10 under serve
    .venv/bin/python benchmarks/bench_faults.py --run-trials 5 --serve-trials 2

Under `assetline run`: a mixed batch (a still, real speech, a short clip with
speech) in a fresh output folder; the CLI's whole process group is SIGKILLed
at a uniformly random moment of a clean run's duration, then the same command
runs again. Under `assetline serve`: the batch is dropped into the inbox and a
random flow-run process holding a heavy-step slot (or, when none holds one at
that moment, any flow-run process) is SIGKILLed; the crash retry must deliver.

Counted per trial: assets lost (an expected output missing after the rerun),
deadlocks (the rerun still not done after --bound seconds), partial outputs
(right after the kill: a temporary file, a sidecar without its output, an
output that does not decode) and verify failures. Timed: from the kill to a
heavy step holding its slot again (the slot files of `assetline.slots`).
Everything under benchmarks/work/faults/ (git-ignored). No timing assertions:
exit 1 only when an asset was lost, a run deadlocked, or something was partial
or failed to verify.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "faults"
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "tests")]

OUTPUTS = {"still": ["cutout.png", "upscaled.png"], "speech": ["transcript.json", "subtitles.srt", "subtitles.vtt"],
           "clip": ["video.mp4", "transcript.json", "subtitles.srt", "subtitles.vtt"]}  # fmt: skip
FAST = ["--set", "video.encode.preset=ultrafast"]


def make_inputs(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    from helpers import make_clip

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.chelsea()).resize((192, 128)).save(folder / "still.jpg", quality=90)
    shutil.copy(REPO / "tests" / "data" / "arctic_a0007.wav", folder / "speech.wav")
    make_clip(folder / "clip.mp4", seconds=2.0, size="320x180")
    return folder


def env_for(home: Path, slots: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    env.update(PREFECT_HOME=str(home), ASSETLINE_SLOTS_DIR=str(slots), COLUMNS="200")
    return env


def cli(*args: str, env: dict, timeout: float) -> tuple[int | None, str]:
    with open(WORK / "cli.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "assetline.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None  # a deadlock, as far as this benchmark can tell
        log.seek(0)
        return code, log.read()


def partial_outputs(out: Path) -> list[str]:
    from PIL import Image

    from assetline.provenance import SIDECAR_SUFFIX

    bad = []
    for p in out.rglob("*"):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(out).parts):
            continue
        if p.name.endswith(".tmp"):
            bad.append(f"{p}: temporary")
        elif p.name.endswith(SIDECAR_SUFFIX) and not p.with_name(p.name[: -len(SIDECAR_SUFFIX)]).is_file():
            bad.append(f"{p}: sidecar without its output")
        elif p.suffix == ".png":
            try:
                with Image.open(p) as img:
                    img.load()
            except Exception as exc:
                bad.append(f"{p}: does not decode ({exc})")
    return bad


def lost_assets(out: Path) -> list[str]:
    from assetline.provenance import verify_output

    lost = []
    for stem, names in OUTPUTS.items():
        folders = [p for p in out.glob(f"{stem}-*") if p.is_dir()] if out.is_dir() else []
        if len(folders) != 1 or not all((folders[0] / n).is_file() and verify_output(folders[0] / n).ok for n in names):
            lost.append(stem)
    return lost


def watch_slot_retaken(since: float, stop: list) -> list[float]:
    """A background poll: when a heavy step holds a slot again after `since` (monotonic)."""
    from assetline import slots

    seen: list[float] = []
    while not stop and not seen:
        if slots.holders():
            seen.append(time.monotonic() - since)
        time.sleep(0.05)
    return seen


def trial_run(n: int, inputs: Path, full: float, home: Path, slot_dir: Path, bound: float) -> dict:
    import threading

    out = WORK / "run-out" / f"t{n:02d}"
    shutil.rmtree(out, ignore_errors=True)
    env = env_for(home, slot_dir)
    os.environ["ASSETLINE_SLOTS_DIR"] = str(slot_dir)
    at = random.uniform(0.5, full)
    with open(WORK / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "assetline.cli", "run", str(inputs), "--out", str(out), *FAST],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=at)
            finished_first = True
        except subprocess.TimeoutExpired:
            finished_first = False
        from assetline import slots

        was_heavy = bool(slots.holders())
        killed = time.monotonic()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    partial = partial_outputs(out)
    stop: list = []
    retaken: list[float] = []
    watcher = threading.Thread(target=lambda: retaken.extend(watch_slot_retaken(killed, stop)), daemon=True)
    watcher.start()
    code, said = cli("run", str(inputs), "--out", str(out), *FAST, env=env, timeout=bound)
    stop.append(True)
    watcher.join(timeout=5)
    verify_code, _ = cli("verify", str(out), env=env, timeout=bound) if out.is_dir() else (1, "")
    return {"kind": "run", "at": at, "finished_before_kill": finished_first, "heavy_at_kill": was_heavy,
            "deadlock": code is None, "rerun_code": code, "lost": lost_assets(out), "partial": partial,
            "verify_failed": verify_code != 0, "kill_to_heavy": retaken[0] if (retaken and was_heavy) else None}  # fmt: skip


def trial_serve(n: int, inputs: Path, bound: float) -> dict:
    from helpers import Serve

    from assetline import slots

    root = WORK / "serve" / f"t{n:02d}"
    shutil.rmtree(root, ignore_errors=True)
    slot_dir = root / "slots"
    os.environ["ASSETLINE_SLOTS_DIR"] = str(slot_dir)
    served = Serve(root, *FAST)
    result = {"kind": "serve", "deadlock": False, "partial": [], "verify_failed": False, "kill_to_heavy": None}
    try:
        for p in sorted(inputs.iterdir()):
            served.drop(p)
        time.sleep(random.uniform(0.5, 8.0))
        deadline = time.monotonic() + bound
        victim = None
        while victim is None and time.monotonic() < deadline:
            held = slots.holders()
            if held:
                victim = random.choice(held).pid
            else:
                running = [r for r in served.flow_runs() if r["state_type"] == "RUNNING"]
                victim = _flow_run_pid(served.proc.pid) if running else None
            if victim is None:
                time.sleep(0.1)
        killed = time.monotonic()
        if victim:
            os.kill(victim, signal.SIGKILL)
        retaken: list[float] = []
        while time.monotonic() < deadline:
            if not retaken and any(h.pid != victim for h in slots.holders()):
                retaken.append(time.monotonic() - killed)
            runs = served.flow_runs()
            if len(runs) >= 3 and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs
                                      if r["state_name"] != "AwaitingRetry") and not lost_assets(served.out):  # fmt: skip
                break
            time.sleep(0.5)
        else:
            result["deadlock"] = True
        result["kill_to_heavy"] = retaken[0] if retaken else None
        result["partial"] = partial_outputs(served.out)
        result["lost"] = lost_assets(served.out)
        code, _ = cli("verify", str(served.out), env=env_for(root / "prefect-home", slot_dir), timeout=bound)
        result["verify_failed"] = code != 0
        result["failed_runs"] = [r["name"] for r in served.flow_runs() if r["state_type"] == "FAILED"]
    finally:
        served.stop()
    return result


def _flow_run_pid(serve_pid: int) -> int | None:
    """A child of the serve process that is a flow run (python running prefect's engine)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == serve_pid and b"prefect" in cmdline and b"server" not in cmdline:
            return int(proc.name)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--run-trials", type=int, default=30)
    parser.add_argument("--serve-trials", type=int, default=10)
    parser.add_argument("--bound", type=float, default=600, help="seconds before a rerun counts as deadlocked")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--results", type=Path, default=HERE / "results" / "faults.md")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    inputs = make_inputs(WORK / "inputs")
    home, slot_dir = WORK / "prefect-home", WORK / "slots"

    start = time.monotonic()  # a clean run first: its length bounds the random kill moments
    code, said = cli("run", str(inputs), "--out", str(WORK / "clean-out"), *FAST, env=env_for(home, slot_dir), timeout=args.bound)
    full = time.monotonic() - start
    if code != 0:
        print(said)
        return 1
    trials = [trial_run(n, inputs, full, home, slot_dir, args.bound) for n in range(args.run_trials)]
    for n, t in enumerate(trials):
        print(f"run trial {n}: kill at {t['at']:.1f} s, lost {t['lost']}, partial {len(t['partial'])}, "
              f"deadlock {t['deadlock']}, kill->heavy {t['kill_to_heavy']}", flush=True)  # fmt: skip
    for n in range(args.serve_trials):
        t = trial_serve(n, inputs, args.bound)
        print(f"serve trial {n}: lost {t.get('lost')}, partial {len(t['partial'])}, deadlock {t['deadlock']}, "
              f"kill->heavy {t['kill_to_heavy']}", flush=True)  # fmt: skip
        trials.append(t)

    def tally(kind: str) -> dict:
        ts = [t for t in trials if t["kind"] == kind]
        times = [t["kill_to_heavy"] for t in ts if t["kill_to_heavy"] is not None]
        return {"trials": len(ts), "lost": sum(len(t.get("lost") or []) for t in ts), "deadlocks": sum(t["deadlock"] for t in ts),
                "partial": sum(len(t["partial"]) for t in ts), "verify_failures": sum(t["verify_failed"] for t in ts),
                "heavy_at_kill": sum(bool(t.get("heavy_at_kill", True)) for t in ts),
                "kill_to_heavy_worst": max(times) if times else None,
                "kill_to_heavy_median": statistics.median(times) if times else None}  # fmt: skip

    run, serve = tally("run"), tally("serve")
    ok = all(x["lost"] == x["deadlocks"] == x["partial"] == x["verify_failures"] == 0 for x in (run, serve))

    def secs(v):
        return "n/a" if v is None else f"{v:.1f} s"

    lines = [
        "## Fault injection: SIGKILL at a random moment, then the next run",
        "",
        f"A still, 4 s of real speech and a 2 s 320x180 clip with speech; a clean run took {full:.1f} s. "
        f"`python benchmarks/bench_faults.py --run-trials {args.run_trials} --serve-trials {args.serve_trials} --seed {args.seed}`",
        "",
        "| | under `assetline run` | under `serve` |",
        "|---|---:|---:|",
        f"| trials | {run['trials']} | {serve['trials']} |",
        f"| of which killed while a heavy step held its slot | {run['heavy_at_kill']} | {serve['heavy_at_kill']} |",
        f"| assets lost (want 0) | {run['lost']} | {serve['lost']} |",
        f"| deadlocks (want 0) | {run['deadlocks']} | {serve['deadlocks']} |",
        f"| partial outputs (want 0) | {run['partial']} | {serve['partial']} |",
        f"| verify failures (want 0) | {run['verify_failures']} | {serve['verify_failures']} |",
        f"| kill to a heavy step running again, median / worst | {secs(run['kill_to_heavy_median'])} / {secs(run['kill_to_heavy_worst'])} "
        f"| {secs(serve['kill_to_heavy_median'])} / {secs(serve['kill_to_heavy_worst'])} |",
        "",
        "The slot itself is free the instant its holder dies (an flock; `test_a_slot_held_by_a_killed_process_is_free_at_once`). "
        "Under `run` the time to the heavy step again is the rerun's own start: Python and Prefect imports, its server's "
        "start, planning and the steps before. Under `serve` it is the crash being noticed by the runner, the automation "
        "putting the run back, the runner's 1 s poll and a new flow-run process.",
        "",
        f"Verdict: **{'passed' if ok else 'FAILED'}**.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from report import target, write_fragment

    targets = [target("fault injection: assets lost, deadlocks, partial outputs, verify failures",
                      run["lost"] + serve["lost"] + run["deadlocks"] + serve["deadlocks"] + run["partial"] + serve["partial"]
                      + run["verify_failures"] + serve["verify_failures"], "==", 0, target_text="0",
                      measured=str(run["lost"] + serve["lost"] + run["deadlocks"] + serve["deadlocks"] + run["partial"]
                                   + serve["partial"] + run["verify_failures"] + serve["verify_failures"]))]  # fmt: skip
    if serve["kill_to_heavy_worst"] is not None:
        targets.append(target("serve: kill to heavy step running again (worst)", serve["kill_to_heavy_worst"], "<=", 10,
                              measured=secs(serve["kill_to_heavy_worst"])))  # fmt: skip
    write_fragment(args.results, text, "faults", targets, {"run": run, "serve": serve, "clean_run_s": full},
                   problems=[] if ok else ["fault injection found lost, deadlocked, partial or unverifiable assets"])  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
