"""The per-asset lock across machines (assetline/asset_lease.py) on a real Prefect server, as its own process.

Each "machine" is a process of its own that takes an asset's slot on the server
through `storage.asset_lock` with `ASSETLINE_ASSET_LOCK=server`, each on an
output root of its own, so only the server's slot can keep them apart (no
shared flock). The server keeps leases on disk (PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE,
as `assetline serve`, compose and the README set it), and is killed and started
again while a slot is held. Leases are the server's shortest, 60 s, and the
repossessor loops each second, so a lost holder's slot is free a minute later.
The bounds below only stop a hang: nothing is timed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from helpers import REPO, api_healthy, free_port, stop_group, wait_until

from assetline import asset_lease

pytestmark = pytest.mark.slow

BOUND_S = 180
LEASE_S = 60  # the server's shortest (Prefect 3.9 refuses less)

HOLDER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from assetline.storage import asset_lock

    out, asset, hold, log = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    def note(what):
        with log.open("a") as fh:
            fh.write(json.dumps({"who": out.name, "what": what, "t": time.time()}) + "\\n")
    note("waiting")
    with asset_lock(out, asset):
        note("in")
        time.sleep(hold)
        note("out")
""")


def test_buckets_are_stable_and_bounded():
    names = [f"still-{i:04d}-{i * 7919:012x}" for i in range(20000)]
    buckets = {asset_lease.bucket(n) for n in names}
    assert asset_lease.bucket(names[0]) == asset_lease.bucket(names[0])
    assert all(b.startswith("assetline-asset-") and len(b) == len("assetline-asset-") + 3 for b in buckets)
    assert len(buckets) <= asset_lease.BUCKETS
    assert len(buckets) > 0.99 * asset_lease.BUCKETS  # 20,000 names spread over nearly all 4096


def test_the_mode_decides(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        monkeypatch.setenv("ASSETLINE_ASSET_LOCK", "file")
        assert not asset_lease.wanted()
        monkeypatch.setenv("ASSETLINE_ASSET_LOCK", "server")
        assert asset_lease.wanted()
        monkeypatch.setenv("ASSETLINE_ASSET_LOCK", "auto")
        assert not asset_lease.wanted()  # not in a work-pool run: the flock is enough
    with temporary_settings({PREFECT_API_URL: None}):
        monkeypatch.setenv("ASSETLINE_ASSET_LOCK", "server")
        assert not asset_lease.wanted()  # no server to hold it
    monkeypatch.setenv("ASSETLINE_ASSET_LOCK", "sometimes")
    with pytest.raises(Exception, match="ASSETLINE_ASSET_LOCK"):
        asset_lease.wanted()


class Server:
    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_HANDLERS") and k != "PREFECT_API_URL"}
        self.env.update(PREFECT_HOME=str(root / "prefect-home"), PREFECT_API_URL=self.api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
                        PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="1", PREFECT_SERVER_LOGGING_LEVEL="WARNING",
                        ASSETLINE_ASSET_LOCK="server", ASSETLINE_ASSET_LEASE_SECONDS=str(LEASE_S))  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.api, timeout=30)

    def start(self) -> None:
        with open(self.root / "server.log", "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                          str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)  # fmt: skip
        wait_until("the server", lambda: self.proc.poll() is None and api_healthy(self.api), 240, 0.5)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def holder(self, out: Path, asset: str, hold: float, log: Path, lease: float = LEASE_S) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", HOLDER, str(out), asset, str(hold), str(log)],
                                env=self.env | {"ASSETLINE_ASSET_LEASE_SECONDS": str(lease)}, cwd=REPO,
                                start_new_session=True)  # fmt: skip

    def active_slots(self, asset: str) -> int | None:
        response = self.client.get(f"/v2/concurrency_limits/{asset_lease.bucket(asset)}")
        return response.json()["active_slots"] if response.status_code == 200 else None


def notes(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def said(log: Path, who: str, what: str) -> bool:
    return any(n["who"] == who and n["what"] == what for n in notes(log))


@pytest.fixture
def server(tmp_path):
    site = Server(tmp_path)
    site.start()
    try:
        yield site
    finally:
        site.client.close()
        stop_group(site.proc, timeout=30)


def test_one_holder_at_a_time_across_machines_a_lost_one_freed_by_its_lease_and_a_restart_forgets_nothing(server, tmp_path):
    log = tmp_path / "notes.jsonl"
    asset = "clip-0001-abcdef123456"
    procs = []
    try:
        # Two "machines", each its own output root (no flock in common): the second waits for the first.
        procs.append(a := server.holder(tmp_path / "machine-a", asset, 3, log))
        wait_until("a to hold the slot", lambda: said(log, "machine-a", "in"), BOUND_S, 0.2)
        assert server.active_slots(asset) == 1
        procs.append(b := server.holder(tmp_path / "machine-b", asset, 0, log))
        wait_until("b to finish", lambda: b.poll() is not None, BOUND_S, 0.2)
        assert a.wait(timeout=BOUND_S) == 0 and b.returncode == 0
        times = {(n["who"], n["what"]): n["t"] for n in notes(log)}
        assert times[("machine-b", "waiting")] < times[("machine-a", "out")] <= times[("machine-b", "in")]
        assert server.active_slots(asset) == 0
        # Another asset (another bucket) never waits on this one.
        other = next(f"clip-{i:04d}" for i in range(100) if asset_lease.bucket(f"clip-{i:04d}") != asset_lease.bucket(asset))
        procs.append(c := server.holder(tmp_path / "machine-c", other, 30, log))
        procs.append(d := server.holder(tmp_path / "machine-d", asset, 0, log))
        assert d.wait(timeout=BOUND_S) == 0 and not said(log, "machine-c", "out")
        c.kill()
        c.wait()

        # A holder lost with its machine (SIGKILL, no release): its lease runs out and the next one gets in.
        procs.append(e := server.holder(tmp_path / "machine-e", asset, 600, log))
        wait_until("e to hold the slot", lambda: said(log, "machine-e", "in"), BOUND_S, 0.2)
        os.killpg(e.pid, signal.SIGKILL)
        e.wait()
        procs.append(f := server.holder(tmp_path / "machine-f", asset, 0, log))
        assert f.wait(timeout=BOUND_S) == 0, "the lost holder's slot was never freed"
        assert server.active_slots(asset) == 0

        # The server killed and started again while a holder is alive, then that holder lost too: the lease was kept
        # on disk, so its slot is still known, still taken, and freed when the lease runs out, never held for good.
        procs.append(g := server.holder(tmp_path / "machine-g", asset, 600, log))
        wait_until("g to hold the slot", lambda: said(log, "machine-g", "in"), BOUND_S, 0.2)
        server.kill()
        server.start()
        assert server.active_slots(asset) == 1
        procs.append(h := server.holder(tmp_path / "machine-h", asset, 0, log))
        wait_until("h to wait", lambda: said(log, "machine-h", "waiting"), BOUND_S, 0.2)
        time.sleep(15)  # g's lease, renewed after the restart, still holds h off
        assert not said(log, "machine-h", "in") and server.active_slots(asset) == 1
        os.killpg(g.pid, signal.SIGKILL)
        g.wait()
        assert h.wait(timeout=BOUND_S) == 0, "the slot taken before the restart was never freed"
        assert server.active_slots(asset) == 0
        order = [(n["who"], n["what"]) for n in notes(log) if n["who"] in ("machine-g", "machine-h") and n["what"] == "in"]
        assert order == [("machine-g", "in"), ("machine-h", "in")]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_run_rides_out_a_server_restart_when_it_takes_or_frees_its_slot(server, tmp_path):
    """A fresh Prefect client does not retry a refused connection, so the slot's own calls wait for the server."""
    log = tmp_path / "notes.jsonl"
    asset = "still-0002-0123456789ab"
    procs = []
    try:
        # Taking: the server is down when the run reaches its asset; it waits, and gets in once the server is back.
        server.kill()
        procs.append(i := server.holder(tmp_path / "machine-i", asset, 0, log))
        wait_until("i to wait", lambda: said(log, "machine-i", "waiting"), BOUND_S, 0.2)
        time.sleep(5)
        assert i.poll() is None and not said(log, "machine-i", "in")
        server.start()
        assert i.wait(timeout=BOUND_S) == 0
        assert server.active_slots(asset) == 0  # taken and freed

        # Freeing: the server goes down while the run holds the slot and comes back after the run is done with it.
        procs.append(j := server.holder(tmp_path / "machine-j", asset, 4, log))
        wait_until("j to hold the slot", lambda: said(log, "machine-j", "in"), BOUND_S, 0.2)
        server.kill()
        wait_until("j to finish its work", lambda: said(log, "machine-j", "out"), BOUND_S, 0.2)
        time.sleep(5)
        assert j.poll() is None  # still trying to free its slot, not failed
        server.start()
        assert j.wait(timeout=BOUND_S) == 0
        assert server.active_slots(asset) == 0  # freed at once, not left to the lease
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
