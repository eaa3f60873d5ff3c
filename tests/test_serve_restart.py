"""`assetline serve` stopped mid-run and killed while files arrive: every file still ends processed once.

Runs against a Prefect server the test starts itself (`PREFECT_API_URL` set,
so serve starts none), so run states can be read after serve is gone.
1. SIGTERM while a run is in flight: serve exits 0, the run ends Cancelled,
   nothing of it reaches the output tree.
2. Files land while nothing serves; serve restarts: its catch-up batch
   processes the cancelled file and the new ones.
3. SIGKILL of serve's whole process group (power cut, OOM killer) mid-run,
   more files land; restart: everything processed exactly once, nothing
   partial left, `assetline verify` passes, inputs untouched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers import api_healthy, free_port, photo, tree_state, wait_until

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

BOUND_S = 600  # against hangs only


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("restart-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(root / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip
    _wait("the Prefect server", lambda: api_healthy(api), 180)
    yield api
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


class Serving:
    def __init__(self, root: Path, api: str, name: str):
        self.inbox, self.out, self.api = root / "inbox", root / "out", api
        self.log = root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"}
        env.update(PREFECT_API_URL=api, PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO")  # the runner's story, for a failure
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assetline.cli", "serve", "--inbox", str(self.inbox), "--out", str(self.out),
             "--set", "inbox.hold_seconds=0.5"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        batches = sum(r["state_type"] == "COMPLETED" for r in _runs(api, "batch-inbox"))
        _wait(f"{name} to start", lambda: self.proc.poll() is not None or "stop with Ctrl-C" in self.log.read_text(), 180)
        assert self.proc.poll() is None, self.log.read_text()
        # Its catch-up batch first, so that what the test drops next reaches only the watcher.
        _wait(f"{name}'s catch-up batch", lambda: sum(r["state_type"] == "COMPLETED" for r in _runs(api, "batch-inbox")) > batches)


def _runs(api: str, flow: str = "process-asset") -> list[dict]:
    body = {"flows": {"name": {"any_": [flow]}}, "limit": 200}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()


def _drop(inbox: Path, source: Path) -> None:
    partial = inbox / (source.name + ".part")
    shutil.copyfile(source, partial)
    os.replace(partial, inbox / source.name)


def _running(api: str, name: str):
    return next((r for r in _runs(api) if r["parameters"].get("path", "").endswith(name) and r["state_type"] == "RUNNING"), None)


def _folders(out: Path, stem: str) -> list[Path]:
    return sorted(out.glob(f"{stem}-*"))


def test_serve_stopped_or_killed_mid_run_loses_nothing_and_repeats_nothing(server, tmp_path):
    api = server
    sources = tmp_path / "sources"
    sources.mkdir()
    big = {n: sources / f"{n}.jpg" for n in ("slow-a", "slow-b")}  # about 4 MP: many seconds of upscaling
    for i, path in enumerate(big.values()):
        photo(("astronaut", "rocket")[i], (2400 + 16 * i, 1800)).save(path, quality=90)
    small = {n: sources / f"{n}.jpg" for n in ("b", "c", "d", "e")}
    for i, path in enumerate(small.values()):
        photo(("chelsea", "coffee", "astronaut", "rocket")[i], (120 + 8 * i, 90)).save(path, quality=90)
    root = tmp_path / "site"
    (root / "inbox").mkdir(parents=True)

    # 1. SIGTERM while slow-a is being processed.
    first = Serving(root, api, "serve-1")
    _drop(first.inbox, big["slow-a"])
    in_flight = _wait("slow-a to be running", lambda: _running(api, "slow-a.jpg"))
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=180) == 0, first.log.read_text()
    state = _wait("slow-a's run to end", lambda: next(
        (r["state_type"] for r in _runs(api) if r["id"] == in_flight["id"] and r["state_type"] != "RUNNING"), None), 120)  # fmt: skip
    # "Runs in flight finish or are marked cancelled" (a run blocked in native code may finish before the
    # cancel lands): either way, whole outputs or none, never part of them.
    assert state in ("CANCELLED", "CANCELLING", "COMPLETED"), state
    folders = _folders(first.out, "slow-a")
    assert len(folders) == 1 if state == "COMPLETED" else len(folders) <= 1
    for folder in folders:
        assert {p.name for p in folder.iterdir()} >= {"cutout.png", "upscaled.png", "upscaled.png.provenance.json"}

    # 2. Files land while nothing serves; the restart's catch-up batch takes them all.
    for name in ("b", "c"):
        _drop(first.inbox, small[name])
    second = Serving(root, api, "serve-2")
    _wait("slow-a, b, c processed", lambda: all(_folders(second.out, s) for s in ("slow-a", "b", "c")), BOUND_S, 1)

    # 3. SIGKILL the whole process group while slow-b runs and more files land.
    _drop(second.inbox, big["slow-b"])
    _wait("slow-b to be running", lambda: _running(api, "slow-b.jpg"))
    _drop(second.inbox, small["d"])
    os.killpg(second.proc.pid, signal.SIGKILL)
    second.proc.wait(timeout=60)
    _drop(second.inbox, small["e"])
    before_inputs = tree_state(second.inbox)
    third = Serving(root, api, "serve-3")
    _wait("everything processed", lambda: all(_folders(third.out, s) for s in ("slow-a", "slow-b", "b", "c", "d", "e")),
          BOUND_S, 1)  # fmt: skip
    third.proc.send_signal(signal.SIGTERM)
    assert third.proc.wait(timeout=180) == 0

    out = third.out
    for stem in ("slow-a", "slow-b", "b", "c", "d", "e"):
        folders = _folders(out, stem)
        assert len(folders) == 1, (stem, folders)
        assert {"cutout.png", "upscaled.png"} <= {p.name for p in folders[0].iterdir()}
    leftovers = [p for p in out.rglob("*") if p.is_file() and (".assetline-staging" in p.parts or p.name.endswith(".tmp"))]
    assert not leftovers, leftovers
    assert tree_state(third.inbox) == before_inputs  # inputs untouched
    verify = subprocess.run([sys.executable, "-m", "assetline.cli", "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Work done once per asset: exactly one "done" summary each (other runs found it up to date, or were cancelled).
    summaries = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"type": {"any_": ["markdown"]}}, "limit": 200},
                           timeout=30).json()  # fmt: skip
    for stem in ("slow-a", "slow-b", "b", "c", "d", "e"):
        done = [a for a in summaries if a["data"].startswith(f"### {stem}.jpg: done")]
        assert len(done) == 1, (stem, len(done))


def _wait(what, check, timeout=BOUND_S, every=0.25):
    return wait_until(what, check, timeout, every)
