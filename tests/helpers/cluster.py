"""The README's "More than one machine" on one machine: a Prefect server (or two API servers and a services
process on Redis) on Postgres or SQLite, workers and the watcher, each its own process; and a lost machine.

Used by tests/test_scale.py and benchmarks/bench_scale.py.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import httpx
import netguard

from helpers.media import REPO
from helpers.postgres import postgres_database
from helpers.processes import api_healthy, free_port, stop_group, wait_until
from helpers.redis import Redis, high_availability_env, redis_server

from assetline.keys import make_chain

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
def servers(root: Path, high_availability: bool, sqlite: bool = False):
    """Postgres (or SQLite, for comparison), Redis in the high-availability set-up, and the Prefect servers on them,
    with the deployments."""
    database = nullcontext(f"sqlite+aiosqlite:///{root / 'prefect.db'}") if sqlite else postgres_database(log_dir=root)
    with database as database_url, (redis_server(log_dir=root) if high_availability else nullcontext()) as redis:
        site = Cluster(root, database_url, redis)
        try:
            site.start_servers()
            site.deploy()
            yield site
        finally:
            site.stop()


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
