"""No crash leaves anything that blocks later work, `assetline run` owns what it starts, crashed served runs come back.

Each test kills a real run at a real moment: while a heavy step (render_video,
transcribe) holds this machine's slot, seen through the slot files
(`assetline.slots`, in a folder of the test's own). Then the next run must
take the slot and finish. Processes are found by the private PREFECT_HOME
every child inherits, so anything left behind is seen (and cleaned up).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from assetline import slots
from helpers import REPO, make_clip, processes_with_env, run_cli, wait_until

pytestmark = pytest.mark.slow

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"
BOUND_S = 600  # a bound against hangs (the deadlock this guards against waited forever), not a speed limit
FAST = ["--set", "video.encode.preset=ultrafast"]


@pytest.fixture
def private(tmp_path: Path, monkeypatch) -> dict:
    """A Prefect home and a slots folder of this test's own, for it and every process it starts."""
    home, slot_dir = tmp_path / "prefect-home", tmp_path / "slots"
    monkeypatch.setenv("ASSETLINE_SLOTS_DIR", str(slot_dir))
    yield {"PREFECT_HOME": str(home), "ASSETLINE_SLOTS_DIR": str(slot_dir), "COLUMNS": "200"}
    for pid in processes_with_env("PREFECT_HOME", str(home)):  # never let a stray outlive the test
        os.kill(pid, signal.SIGKILL)


def start_run(inputs: Path, out: Path, env: dict, log) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    full.update(env)
    cmd = [sys.executable, "-m", "assetline.cli", "run", str(inputs), "--out", str(out), *FAST]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full, start_new_session=True)


def wait_for_holder(step: str, proc: subprocess.Popen | None = None) -> slots.Holder:
    def held():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {step} took its slot")
        return next(iter(slots.holders(step)), None)

    return wait_until(f"{step} to hold its slot", held, BOUND_S, every=0.02)


def gone(home: str) -> list[int]:
    """What is left of a run's processes, given a moment for the kernel's parent-death signals to land."""
    for _ in range(300):
        left = processes_with_env("PREFECT_HOME", home)
        if not left:
            break
        time.sleep(0.1)
    return left


def speech_and_clip(folder: Path, which: str) -> Path:
    folder.mkdir()
    if which == "render_video":
        make_clip(folder / "clip.mp4", seconds=3.0, size="320x180")  # long enough to be caught mid-render
    else:
        shutil.copy(SPEECH, folder / "speech.wav")
    return folder


@pytest.mark.parametrize("step", ["render_video", "transcribe"])
def test_sigkill_of_run_mid_heavy_step_leaves_nothing_running_and_the_next_run_takes_the_slot(step, tmp_path, private):
    inputs = speech_and_clip(tmp_path / "in", step)
    out = tmp_path / "out"
    with tempfile.TemporaryFile() as log:
        proc = start_run(inputs, out, private, log)
        holder = wait_for_holder(step, proc)
        assert holder.pid == proc.pid and holder.flow_run_name  # who holds it is on record, for ops
        proc.kill()  # the CLI alone, as the OOM killer would: its server and ffmpeg must go with it
        proc.wait(timeout=60)
    assert gone(private["PREFECT_HOME"]) == []
    assert slots.holders() == []  # the kernel gave the slot back with the process

    again = run_cli("run", str(inputs), "--out", str(out), *FAST, api_url=None, env=private)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 done, 0 up to date, 0 failed" in again.stdout, again.stdout
    assert run_cli("verify", str(out), api_url=None).returncode == 0
    assert gone(private["PREFECT_HOME"]) == []


def test_sigterm_of_run_cancels_what_is_in_flight_in_one_line_and_leaves_no_process(tmp_path, private):
    inputs = speech_and_clip(tmp_path / "in", "render_video")
    out = tmp_path / "out"
    with tempfile.TemporaryFile() as log:
        proc = start_run(inputs, out, private, log)
        wait_for_holder("render_video", proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # the process alone, as a terminal or a scheduler sends it
        code = proc.wait(timeout=BOUND_S)
        took = time.monotonic() - sent
        log.seek(0)
        said = log.read().decode(errors="replace")
    assert code == 128 + signal.SIGTERM, said
    lines = [line for line in said.splitlines() if "cancelled" in line]
    assert len(lines) == 1 and "cancelled (SIGTERM): 1 asset(s) in flight stopped (clip.mp4)" in lines[0], said
    assert "Traceback" not in said
    print(f"SIGTERM to exit: {took:.1f} s")  # the brief says within 10 s; measured here, never asserted on time
    assert gone(private["PREFECT_HOME"]) == []
    assert slots.holders() == []
    assert not [p for p in out.rglob("*.mp4") if not any(part.startswith(".") for part in p.relative_to(out).parts)]

    again = run_cli("run", str(inputs), "--out", str(out), *FAST, api_url=None, env=private)
    assert again.returncode == 0 and "1 done, 0 up to date, 0 failed" in again.stdout, again.stdout + again.stderr


def test_a_slot_held_by_a_killed_process_is_free_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSETLINE_SLOTS_DIR", str(tmp_path / "slots"))
    code = ("import time; from assetline.slots import heavy_slot\n"
            "with heavy_slot('render_video', 1, asset='held.mp4'):\n    print('held', flush=True); time.sleep(600)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        (held,) = slots.holders("render_video")
        assert (held.pid, held.asset, held.slot) == (holder.pid, "held.mp4", 0)
        listed = run_cli("slots", api_url=None)  # what ops run to see it
        assert f"render_video #0 on {slots.host()}: held.mp4 (pid {holder.pid}" in listed.stdout, listed.stdout
        holder.kill()
        holder.wait(timeout=60)
        start = time.monotonic()
        with slots.heavy_slot("render_video", 1) as index:
            waited = time.monotonic() - start
            assert index == 0 and [h.pid for h in slots.holders("render_video")] == [os.getpid()]
        assert waited < 60, waited  # a hang guard: the kernel frees it at once (measured: one poll, 0.2 s)
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_second_slot_lets_two_run_and_a_third_waits(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("ASSETLINE_SLOTS_DIR", str(tmp_path / "slots"))
    inside, peak, lock, release = [], [0], threading.Lock(), threading.Event()

    def work(n: int) -> None:
        with slots.heavy_slot("transcribe", 2, asset=f"a{n}"):
            with lock:
                inside.append(n)
                peak[0] = max(peak[0], len(inside))
            release.wait(120)  # held until the test has seen who got in
            with lock:
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    wait_until("two holders", lambda: len(inside) == 2, 120, every=0.05)
    time.sleep(1.0)  # the other two are polling for a slot meanwhile
    assert len(inside) == 2 and len(slots.holders("transcribe")) == 2
    release.set()
    for t in threads:
        t.join(timeout=120)
    assert peak[0] == 2 and slots.holders() == []


@pytest.mark.parametrize("step", ["render_video", "transcribe"])
def test_a_served_run_killed_mid_heavy_step_is_retried_as_the_same_run_and_delivered_once(step, tmp_path, private):
    from helpers import Serve

    source = speech_and_clip(tmp_path / "media", step)
    served = Serve(tmp_path / "serve")
    try:
        (name,) = [p.name for p in source.iterdir()]
        served.drop(source / name)
        holder = wait_for_holder(step)
        assert holder.pid != served.proc.pid  # a flow-run process of the runner's
        os.kill(holder.pid, signal.SIGKILL)  # as the OOM killer would
        run = wait_until("the run to come back and complete", lambda: next(
            (r for r in served.runs_for(name) if r["state_type"] in ("COMPLETED", "FAILED")), None), BOUND_S)  # fmt: skip
        assert run["state_type"] == "COMPLETED", run["state"]
        assert len(served.runs_for(name)) == 1  # the same run, retried: not a second one
        assert run["run_count"] >= 2
        history = served.client.get(f"/flow_run_states/", params={"flow_run_id": run["id"]}).json()
        kinds = [s["type"] for s in sorted(history, key=lambda s: s["timestamp"])]
        assert "CRASHED" in kinds and kinds.index("CRASHED") < len(kinds) - 1, kinds
        (folder,) = [p for p in served.out.iterdir() if not p.name.startswith(".")]
        assert run_cli("verify", str(folder), api_url=None).returncode == 0
    finally:
        served.stop()


def test_a_served_run_that_crashes_past_crash_retries_ends_failed_with_the_reason(tmp_path, private):
    from helpers import Serve

    source = speech_and_clip(tmp_path / "media", "transcribe")
    served = Serve(tmp_path / "serve", "--set", "run.crash_retries=0")
    try:
        served.drop(source / "speech.wav")
        os.kill(wait_for_holder("transcribe").pid, signal.SIGKILL)
        run = wait_until("the run to end", lambda: next(
            (r for r in served.runs_for("speech.wav") if r["state_type"] in ("COMPLETED", "FAILED")), None), BOUND_S)  # fmt: skip
        assert run["state_type"] == "FAILED", run["state"]
        message = run["state"]["message"]
        assert "crashed 1 times (run.crash_retries is 0): not retried again" in message, message
        assert "status code" in message  # the crash's own reason, as the runner saw it
        assert not [p for p in served.out.iterdir() if not p.name.startswith(".")]  # nothing delivered
    finally:
        served.stop()
