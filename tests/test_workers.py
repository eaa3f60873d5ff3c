"""Scale-out: `configs/prefect.yaml` deployed to a `process` work pool, two workers draining ten assets.

A real Prefect server (SQLite) started here, `prefect deploy` of the shipped
file, two `prefect worker start` processes (one run at a time each), and ten
arrival events posted to the server: every asset is processed exactly once,
and both workers take part.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from helpers import REPO, api_healthy, free_port, photo, stop_group, wait_until

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

BOUND_S = 600  # against hangs only


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_HANDLERS")}
    env.update(PREFECT_HOME=str(root / "prefect-home"), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               ASSETLINE_INBOX=str(root / "inbox"), ASSETLINE_OUT=str(root / "out"),
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")  # fmt: skip
    (root / "inbox").mkdir()
    procs = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(root / f"{name}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
        procs.append(proc)
        return proc

    try:
        start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_until("the server", lambda: api_healthy(api), 180, 1.0)
        for args in (["work-pool", "create", "process", "--type", "process"],
                     ["--no-prompt", "deploy", "--prefect-file", str(REPO / "configs" / "prefect.yaml"), "--all"]):  # fmt: skip
            done = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=REPO, capture_output=True,
                                  text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        for name in ("worker-a", "worker-b"):
            start(name, "worker", "start", "--pool", "process", "--name", name, "--limit", "1")
        yield root, api
    finally:
        for proc in reversed(procs):
            stop_group(proc)


def test_two_workers_drain_ten_assets_each_processed_exactly_once(pool):
    root, api = pool
    client = httpx.Client(base_url=api, timeout=30)
    deployments = {d["name"]: d for d in client.post("/deployments/filter", json={}).json()}
    assert deployments["process-asset"]["work_pool_name"] == "process"
    assert [s["schedule"]["cron"] for s in deployments["batch-inbox"]["schedules"]] == ["0 2 * * *"]

    names = []
    for i in range(10):
        name = f"{('chelsea', 'coffee')[i % 2]}-{i}.jpg"
        photo(("chelsea", "coffee")[i % 2], (80 + 6 * i, 64)).save(root / "inbox" / name, quality=90)
        names.append(name)
    events = [
        {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(), "event": "assetline.asset.arrived",
         "resource": {"prefect.resource.id": f"assetline.asset.test-{i}"}, "payload": {"path": name}}  # fmt: skip
        for i, name in enumerate(names)
    ]
    assert client.post("/events", json=events).status_code == 204

    def finished():
        runs = client.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["process-asset"]}}}).json()
        done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        return runs if len(done) >= 10 else None

    runs = wait_until("ten runs to finish", finished, BOUND_S, 1.0)
    time.sleep(3)
    runs = client.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["process-asset"]}}}).json()
    assert sorted(r["parameters"]["path"] for r in runs) == sorted(names)  # one run per asset, no more
    assert all(r["state_type"] == "COMPLETED" for r in runs), [(r["name"], r["state"]["message"]) for r in runs]
    out = root / "out"
    for name in names:
        folders = list(out.glob(f"{Path(name).stem}-*"))
        assert len(folders) == 1 and (folders[0] / "upscaled.png").is_file(), name

    taken = {}
    for worker in ("worker-a", "worker-b"):
        log = (root / f"{worker}.log").read_text()
        taken[worker] = set(re.findall(r"Beginning flow run '([^']+)'", log))
    assert taken["worker-a"] and taken["worker-b"], taken  # both took part
    assert not taken["worker-a"] & taken["worker-b"]  # no run executed twice
    assert len(taken["worker-a"] | taken["worker-b"]) == 10
    client.close()
