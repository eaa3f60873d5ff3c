"""Scale-out as the README's "More than one machine" tells it, on a real PostgreSQL: a lost worker and a restarted server.

A Prefect server on Postgres (tests/helpers/postgres.py), the `process` work
pool, `prefect deploy` of configs/prefect.yaml, two `prefect worker start
--limit 2` and `assetline watch`, each its own process. A burst of small
stills lands in the inbox; one worker is SIGKILLed with its flow-run processes
while it runs assets (a lost machine: nobody is left to report the crash), and
the server is killed and started again on the same port and database. Then
every asset is delivered once, `verify` passes and no run failed: the killed
worker's runs went silent, were marked Crashed by the zombie automation
(heartbeats) and re-run on the other worker.

The same burst runs again in the README's high-availability set-up: two API
servers (`--no-services`) and one `prefect server services start` on the same
Postgres, with Redis (tests/helpers/redis.py) for events, trigger state,
leases and Docket. worker-a talks to one API server, worker-b and the watcher
to the other, and the one that is restarted mid-burst is worker-a's. A second
test posts arrivals to either API server and counts one run for each.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import httpx
import netguard
import pytest

from helpers import REPO, api_healthy, free_port, photo, stop_group, wait_until
from helpers.postgres import postgres_database
from helpers.redis import Redis, high_availability_env, redis_server

from assetline.keys import make_chain

pytestmark = pytest.mark.slow  # a real Postgres, Prefect server, workers and watcher: `-m 'not slow'` skips it

# The issue asks for 60; on 2 cores a flow-run process costs seconds of CPU (about 5 assets a minute
# here, with the lost worker's minute and a half), so 16 keep the burst near 6 minutes. SCALE_ASSETS=60 runs the
# issue's full burst.
ASSETS = int(os.environ.get("SCALE_ASSETS", 16))
BOUND_S = 900  # against hangs only
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Small stills, cut out (u2netp) and upscaled with Lanczos: the test is about orchestration, not models.
LIGHT_RECIPE = """\
run:
  concurrency: 1
image:
  upscale:
    method: lanczos
"""


class Cluster:
    """The README's set-up on one machine: its processes, their logs under `root`, and the API."""

    def __init__(self, root: Path, database_url: str, redis: Redis | None = None):
        self.root = root
        self.redis = redis  # None: one server; else two API servers and a services process on Redis
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.port_b = free_port() if redis else self.port
        self.api_b = f"http://127.0.0.1:{self.port_b}/api"  # the second API server's (the one server's without Redis)
        self.inbox, self.out = root / "inbox", root / "out"
        self.inbox.mkdir()
        (root / "light.yaml").write_text(LIGHT_RECIPE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_HANDLERS") and k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(root / "prefect-home"), PREFECT_API_URL=self.api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_API_DATABASE_CONNECTION_URL=database_url, PREFECT_SERVER_LOGGING_LEVEL="WARNING",
                   PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
                   ASSETLINE_INBOX=str(self.inbox), ASSETLINE_OUT=str(self.out), ASSETLINE_RECIPE=str(root / "light.yaml"),
                   ASSETLINE_SLOTS_DIR=str(root / "slots"),
                   PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")  # fmt: skip
        self.auth: tuple[str, str] | None = None
        if redis is not None:  # beyond one server, as on a network: every API server requires Prefect's auth string
            env.update(high_availability_env(redis))
            self.auth = ("ops", secrets.token_urlsafe(18))
            env.update(PREFECT_SERVER_API_AUTH_STRING=":".join(self.auth), PREFECT_API_AUTH_STRING=":".join(self.auth))
        self.env = env
        # One signing key for the whole cluster, made once (a CA and the certificate it issued) and handed to every
        # worker as PEM text in its environment, as a secret would; delivery trusts that CA alone.
        ca, _, chain, key = make_chain("es256", org="assetline test cluster")
        self.cluster_key = {"ASSETLINE_SIGNING_CERT": chain.decode(), "ASSETLINE_SIGNING_KEY": key.decode()}
        self.cluster_ca = ca.decode()
        self.server_netguard = root / "server-netguard.jsonl"
        self.procs: dict[str, subprocess.Popen] = {}
        self.client = httpx.Client(base_url=self.api, timeout=30, auth=self.auth)

    def start(self, name: str, *argv: str, env: dict | None = None) -> subprocess.Popen:
        """`argv` in its own process group (a session), output to `root/<name>.log` (appended across restarts)."""
        with open(self.root / f"{name}.log", "a") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env | (env or {}), cwd=REPO, start_new_session=True)  # fmt: skip
        self.procs[name] = proc
        return proc

    def prefect(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        return self.start(name, sys.executable, "-m", "prefect", *args, env=env)

    def once(self, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "prefect", *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def start_server(self, name: str = "server") -> None:
        """The API server `name` ("server", or "server-b" with Redis), on its own port, once it answers."""
        # `prefect work-pool create` makes the server look up Prefect's collection registry on GitHub (it falls back
        # to its own copy): still refused by the network guard, but recorded apart, and checked by `server_reached_out`.
        port, api = (self.port, self.api) if name == "server" else (self.port_b, self.api_b)
        self.prefect(name, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                     *(["--no-services"] if self.redis else []), env={netguard.LOG_ENV: str(self.server_netguard)})  # fmt: skip
        wait_until(f"the API server {name}", lambda: self.procs[name].poll() is None and api_healthy(api), 240, 1.0)

    def start_servers(self) -> None:
        if self.redis is None:
            self.start_server()
            return
        self.once("server", "database", "upgrade", "-y")  # once, before any server (each has MIGRATE_ON_START off)
        # One at a time: two servers starting at once on a new database both insert Prefect's block types, and one
        # exits on uq_block_type__slug. A restart later, with the other running, is safe.
        self.start_server("server")
        self.start_server("server-b")
        self.prefect("services", "server", "services", "start", env={netguard.LOG_ENV: str(self.server_netguard)})
        # Ready once the services process consumes the Redis event stream: an event posted to the second API
        # server is stored by the event persister, which runs only there.
        probe = {"id": str(uuid.uuid4()), "event": "assetline.test.probe", "occurred": datetime.now(timezone.utc).isoformat(),
                 "resource": {"prefect.resource.id": "assetline.test.probe"}}  # fmt: skip

        def stored() -> bool:
            httpx.post(f"{self.api_b}/events", json=[probe], timeout=30, auth=self.auth).raise_for_status()  # the same id: stored once
            found = self.client.post("/events/filter", json={"filter": {"event": {"name": [probe["event"]]}}}).json()
            return self.procs["services"].poll() is None and found.get("total", 0) > 0

        wait_until("the services process to store events", stored, 240, 2.0)

    def deploy(self) -> None:
        self.once("work-pool", "create", "process", "--type", "process")
        self.once("--no-prompt", "deploy", "--prefect-file", str(REPO / "configs" / "prefect.yaml"), "--all")

    def flow_runs(self, flow_name: str = "process-asset") -> list[dict]:
        runs, offset = [], 0
        while True:
            body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200, "offset": offset}
            page = self.client.post("/flow_runs/filter", json=body).json()
            runs += page
            if len(page) < 200:
                return runs
            offset += 200

    def states(self, run_id: str) -> list[dict]:
        states = self.client.get("/flow_run_states/", params={"flow_run_id": run_id}).json()
        return sorted(states, key=lambda s: s["timestamp"])

    def server_reached_out(self) -> list[str]:
        """Where the server tried to connect beyond loopback, other than Prefect's collection registry."""
        attempts = netguard.attempts(self.server_netguard) if self.server_netguard.exists() else []
        return [f"{a['kind']} {a['target']}" for a in attempts if "raw.githubusercontent.com" not in str(a["target"])]

    def stop(self) -> None:
        self.client.close()
        for proc in reversed(list(self.procs.values())):
            stop_group(proc, timeout=30)

    def tails(self, lines: int = 40) -> str:
        shown = []
        for log in sorted(self.root.glob("*.log")):
            shown.append(f"----- {log.name} (last {lines} lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(shown)


@contextmanager
def servers(root: Path, high_availability: bool):
    """Postgres, Redis in the high-availability set-up, and the Prefect servers on them, with the deployments."""
    with postgres_database(log_dir=root) as database_url, (redis_server(log_dir=root) if high_availability else nullcontext()) as redis:
        site = Cluster(root, database_url, redis)
        try:
            site.start_servers()
            site.deploy()
            yield site
        finally:
            site.stop()


@pytest.fixture(params=["one-server", "high-availability"])
def cluster(request, tmp_path):
    """The deployments, two workers and the watcher; with Redis, worker-a on one API server, the rest on the other."""
    with servers(tmp_path, request.param == "high-availability") as site:
        for name, api in (("worker-a", site.api), ("worker-b", site.api_b)):  # each "machine" its own empty keys folder
            site.prefect(name, "worker", "start", "--pool", "process", "--name", name, "--limit", "2",
                         env=site.cluster_key | {"ASSETLINE_KEYS": str(tmp_path / f"keys-{name}"), "PREFECT_API_URL": api})  # fmt: skip
        site.start("watcher", sys.executable, "-m", "assetline.cli", "watch", "--inbox", str(site.inbox),
                   "--set", "inbox.hold_seconds=0.5", "--set", "inbox.poll_seconds=0.25", env={"PREFECT_API_URL": site.api_b})  # fmt: skip
        wait_until("the watcher", lambda: "watching" in (tmp_path / "watcher.log").read_text(), 120, 0.5)
        yield site


@contextmanager
def logs_shown_on_failure(site: Cluster):
    try:
        yield
    except BaseException:
        print(site.tails())
        try:  # what the server knows of each unfinished run, and of the arrivals
            for run in site.flow_runs() + site.flow_runs("batch-inbox"):
                if run["state_type"] != "COMPLETED":
                    print(run["name"], run["parameters"].get("path"), [(s["name"], s["timestamp"][11:19], s["message"])
                                                                       for s in site.states(run["id"])])  # fmt: skip
            arrived = site.client.post("/events/filter", json={"filter": {"event": {"name": ["assetline.asset.arrived"]}},
                                                               "limit": 200}).json()  # fmt: skip
            print("arrival events stored:", arrived.get("total"), "process-asset runs:", len(site.flow_runs()))
        except Exception as exc:
            print(f"(no run history: {exc})")
        raise


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, whatever session or group it moved to (the worker isolates its flow runs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def flow_run_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"PREFECT__FLOW_RUN_ID=")), None)


def kill_machine(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and every process under it at once, as if its machine were switched off."""
    tree = [proc.pid, *descendants(proc.pid)]
    for group in {os.getpgid(p) for p in tree if Path(f"/proc/{p}").exists()}:
        os.killpg(group, signal.SIGKILL)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def when(state: dict) -> float:
    return datetime.fromisoformat(state["timestamp"]).timestamp()


def test_burst_with_a_lost_worker_and_a_restarted_server_is_delivered_once_on_postgres(cluster):
    site = cluster
    with logs_shown_on_failure(site):
        automations = {a["name"] for a in site.client.post("/automations/filter", json={}).json()}
        assert {"assetline: re-run crashed runs", "assetline: mark runs Crashed when their heartbeats stop"} <= automations

        staged = site.root / "staged"
        staged.mkdir()
        names = []
        for i in range(ASSETS):
            name = f"still-{i:02d}.jpg"
            photo(("chelsea", "coffee", "astronaut", "rocket")[i % 4], (96 + i, 72)).save(staged / name, quality=90)
            names.append(name)
        started = time.monotonic()
        first, second = names[: ASSETS // 2], names[ASSETS // 2 :]
        for name in first:  # the first half of the burst at once, each file renamed in whole
            os.replace(staged / name, site.inbox / name)

        # 1. Mid-burst, the server is killed and started again on the same port and database (with Redis: worker-a's
        # API server; the other one, the watcher's and worker-b's, and the services process go on).
        wait_until("a first asset delivered", lambda: any(site.out.glob("still-*/upscaled.png")), BOUND_S, 0.5)
        os.killpg(site.procs["server"].pid, signal.SIGKILL)
        site.procs["server"].wait(timeout=30)
        site.start_server()
        restarted_at = time.time()
        for name in second:
            os.replace(staged / name, site.inbox / name)

        # 2. The worker-a "machine" is lost while it runs assets that arrived after the restart: Prefect's
        # in-memory causal ordering holds back the state events of runs it saw before a restart for up to
        # 15 minutes (PRECEDING_EVENT_LOOKBACK), so the crash retry of those would come that late.
        def worker_a_running() -> dict[str, int] | None:
            running = {r["id"] for r in site.flow_runs() if r["state_type"] == "RUNNING"
                       and r["parameters"].get("path") in second}  # fmt: skip
            mine = {run: pid for pid in descendants(site.procs["worker-a"].pid) if (run := flow_run_of(pid)) in running}
            return mine or None

        lost = set(wait_until("worker-a to run an asset", worker_a_running, BOUND_S, 0.2))
        kill_machine(site.procs["worker-a"])
        killed_at = time.time()

        def delivered() -> bool:
            return all(len(folders := list(site.out.glob(f"{Path(n).stem}-*"))) == 1 and (folders[0] / "upscaled.png").is_file()
                       for n in names)  # fmt: skip

        wait_until("every asset delivered", delivered, BOUND_S, 1.0)
        finished = time.monotonic()

        def all_finished() -> tuple[list[dict], list[dict]] | None:
            runs = site.flow_runs()
            batches = [r for r in site.flow_runs("batch-inbox") if r["state_type"] != "SCHEDULED"]  # not the nightly ones
            if all(r["state_type"] in TERMINAL for r in runs + batches) and {r["id"] for r in runs} >= lost:
                return runs, batches
            return None

        runs, batches = wait_until("every run finished", all_finished, BOUND_S, 1.0)

        # Delivered, whole, verified; nothing failed.
        for name in names:
            (folder,) = site.out.glob(f"{Path(name).stem}-*")
            assert {"cutout.png", "cutout.png.provenance.json", "upscaled.png", "upscaled.png.provenance.json"} <= {
                p.name for p in folder.iterdir()}, folder  # fmt: skip
        leftovers = [p for p in site.out.rglob("*") if p.is_file() and (".assetline-staging" in p.parts or p.name.endswith(".tmp"))]
        assert not leftovers, leftovers
        failed = [(r["name"], r["state_type"], r["state"]["message"]) for r in runs + batches if r["state_type"] != "COMPLETED"]
        assert not failed, failed
        # Signed with the cluster's one key on both workers: verify on a third machine that trusts that CA alone.
        delivery = site.env | {"ASSETLINE_TRUST_ANCHORS": site.cluster_ca, "ASSETLINE_KEYS": str(site.root / "keys-delivery")}
        verify = subprocess.run([sys.executable, "-m", "assetline.cli", "verify", str(site.out)], capture_output=True,
                                text=True, env=delivery, timeout=600)  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert not list(site.root.glob("keys-*/*.key")), "a worker made a development CA of its own"

        assert not site.server_reached_out()

        # Each processed to completion exactly once: one "done" summary per asset (any twin run found it up to date).
        summaries = []
        while len(page := site.client.post("/artifacts/filter", json={"artifacts": {"type": {"any_": ["markdown"]}},
                                                                      "limit": 200, "offset": len(summaries)}).json()):  # fmt: skip
            summaries += page
        for name in names:
            done = [a for a in summaries if (a["data"] or "").startswith(f"### {name}: done")]
            assert len(done) == 1, (name, len(done))

        # The lost worker's runs: silent, so marked Crashed by the zombie automation, then run again elsewhere.
        back_running, crashed_after = [], []
        for run_id in lost:
            history = site.states(run_id)
            kinds = [s["type"] for s in history]
            assert "CRASHED" in kinds and kinds[-1] == "COMPLETED", kinds
            crash = next(s for s in history if s["type"] == "CRASHED")
            assert "no heartbeat" in (crash["message"] or ""), crash
            again = next(s for s in history if s["type"] == "RUNNING" and when(s) > when(crash))
            crashed_after.append(when(crash) - killed_at)
            back_running.append(when(again) - killed_at)
        # The runs did send heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY from prefect.yaml). Not asked of each lost run:
        # one killed within a moment of Running may die before its events client sends the first beat, and a re-run
        # that finds its asset up to date can end within a second, before its beat leaves the process.
        beating = [r["id"] for r in runs if site.client.post("/events/filter", json={"limit": 1, "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{r['id']}"]}}}).json()["events"]]  # fmt: skip
        assert len(beating) >= len(runs) // 2, (len(beating), len(runs))

        minutes = (finished - started) / 60
        setup = "2 API servers + services on Redis" if site.redis else "one server"
        print(f"\n{ASSETS} stills, 2 workers (--limit 2), Postgres, {setup}: delivered in {finished - started:.0f} s, "
              f"{ASSETS / minutes:.1f} assets a minute; {len(runs)} process-asset runs, {len(batches)} batch runs")
        print(f"server restarted; worker-a killed {killed_at - restarted_at:.0f} s later with {len(lost)} run(s) in flight; "
              "from the kill to Crashed: " + ", ".join(f"{s:.0f} s" for s in sorted(crashed_after)) +
              "; to running again elsewhere (after the runs queued before it): " + ", ".join(f"{s:.0f} s" for s in sorted(back_running)))


def test_an_arrival_announced_to_either_api_server_triggers_exactly_one_run(tmp_path):
    """High availability: the watcher's events reach the one services process through Redis from any API server."""
    with servers(tmp_path, high_availability=True) as site, logs_shown_on_failure(site):
        assert "NOAUTH" in site.redis.ping(password="")  # nothing reaches Redis without its password
        for api in (site.api, site.api_b):  # nor either API server without the auth string (the workers, the watcher
            # and this test's own client send it: the burst test's runs are made and reported through it)
            assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).status_code == 401
            assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30, auth=site.auth).status_code == 200
        paths = {site.api: [f"via-a-{i}.jpg" for i in range(3)], site.api_b: [f"via-b-{i}.jpg" for i in range(3)]}
        for api, names in paths.items():  # the watcher's own announcement (emit_arrival), a process per API server
            for i, name in enumerate(names):
                photo("coffee", (64 + i, 48)).save(site.inbox / name)
            announce = ("import hashlib, sys; from pathlib import Path; from assetline.inbox import emit_arrival\n"
                        "for n in sys.argv[2:]: emit_arrival(Path(sys.argv[1]) / n, Path(sys.argv[1]), hashlib.sha256(n.encode()).hexdigest(), 1)")  # fmt: skip
            done = subprocess.run([sys.executable, "-c", announce, str(site.inbox), *names], env=site.env | {"PREFECT_API_URL": api},
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        wanted = sorted(n for names in paths.values() for n in names)

        def triggered() -> list[dict] | None:
            runs = site.flow_runs()
            return runs if len(runs) >= len(wanted) else None

        wait_until("a run for each arrival", triggered, 300, 1.0)
        # No second run of any: the services process is the only trigger evaluator, whichever server took the event.
        # (A second evaluator, e.g. a server started without --no-services, would add its run within seconds.)
        time.sleep(15)
        runs = site.flow_runs()
        assert sorted(r["parameters"]["path"] for r in runs) == wanted, [(r["name"], r["parameters"]) for r in runs]
        assert all(r["deployment_id"] for r in runs)

        # A worker handed no key (an empty keys folder, no ASSETLINE_SIGNING_*): its run fails, naming that folder,
        # and makes no development CA of its own (which `verify` on any other machine would not trust).
        keyless = site.root / "keys-keyless"
        site.prefect("worker-keyless", "worker", "start", "--pool", "process", "--name", "keyless", "--limit", "1",
                     env={"ASSETLINE_KEYS": str(keyless)})  # fmt: skip

        def failed() -> dict | None:
            return next((r for r in site.flow_runs() if r["state_type"] in TERMINAL), None)

        ended = wait_until("the keyless worker's first run to end", failed, BOUND_S, 1.0)
        stop_group(site.procs.pop("worker-keyless"), timeout=30)
        assert ended["state_type"] == "FAILED", ended["state"]
        assert "signing key" in ended["state"]["message"] and str(keyless) in ended["state"]["message"], ended["state"]["message"]
        assert not list(keyless.glob("*.key")) and not list(site.out.rglob("*.provenance.json"))
