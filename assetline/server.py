"""A local Prefect server (SQLite) for the demo and `serve`, when no PREFECT_API_URL is set.

Started as a child process on 127.0.0.1, waited on until healthy, and stopped
(with its whole process group) when the context ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from assetline.auth import SERVER_VAR, is_loopback
from assetline.errors import AssetlineError
from assetline.lifetime import die_with_parent
from assetline.prefect_env import prefect_home

STARTUP_TIMEOUT_S = 120
# Retention (Prefect's own db_vacuum service): flow runs ended more than 30 days ago are deleted with their
# logs, task runs and artifacts; events go after PREFECT_SERVER_EVENTS_RETENTION_PERIOD (Prefect: 7 days).
# The outputs keep their provenance manifests, so what is lost is the run history only. Set either to change it.
RETENTION = {
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(30 * 24 * 3600),
    # Concurrency leases (the per-asset slot, asset_lease.py) on disk under PREFECT_HOME, not in memory: a restart
    # that forgot them would leave their slots occupied for good.
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
}


def ui_url_for(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServer:
    """A local Prefect server process, started at once and waited on only when it is needed.

    `assetline run` starts one before it imports its flows and plans: the
    server's own start (its imports, about 5 s on 2 cores) then overlaps the
    command's imports, planning and model loading instead of following them.
    """

    def __init__(self, port: int = 4200, host: str = "127.0.0.1", ui: bool = True) -> None:
        port = port or free_port(host)
        if not is_loopback(host) and not os.environ.get(SERVER_VAR):
            raise AssetlineError(f"{host}:{port}", f"a server reachable beyond loopback needs {SERVER_VAR} (user:password)")
        if not _port_free(port, host):
            raise AssetlineError(f"{host}:{port}", "port is in use: pass --port, or set PREFECT_API_URL to that server")
        home = prefect_home()
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / "server.log"
        env = {**RETENTION, **os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.setdefault("PREFECT_UI_API_URL", f"http://127.0.0.1:{port}/api")
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command + ([] if ui else ["--no-ui"]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )  # fmt: skip
        self.api = f"http://127.0.0.1:{port}/api"
        self.stopped = False

    def ready(self, heartbeats: bool = True) -> str:
        """Wait until it answers, point this process's Prefect clients at it; its UI address.

        `heartbeats=False`: flow runs in this process send none. For a server that
        lives exactly as long as this process (`assetline run`'s): nothing there
        listens for them, and each run's end would wait up to a second for its
        heartbeat thread (Prefect's sleeps in whole seconds).
        """
        _wait_healthy(self.api, self.proc, self.log_path)
        _use_api(self.api, heartbeats=heartbeats)
        return ui_url_for(self.api)

    def stop(self, hurry: bool = False) -> None:
        """Send what is buffered, unset the API, stop the process group; once (later calls do nothing)."""
        if self.stopped:
            return
        self.stopped = True
        _flush_run_logs(timeout=2 if hurry else 10)
        _use_api(None)
        _stop(self.proc, grace=5 if hurry else 20)


@contextmanager
def prefect_server(port: int = 4200, host: str = "127.0.0.1", ui: bool = True, started: LocalServer | None = None,
                   heartbeats: bool = True) -> Iterator[str]:  # fmt: skip
    """Yield the UI address: the configured server's, or a local one started for the duration.

    The local one listens on `host` (loopback by default; 0.0.0.0 in a container, where
    the port is published; port 0: any free one); the UI's browser side reaches the API at
    `PREFECT_UI_API_URL`, by default through 127.0.0.1 and the same port. Beyond loopback
    it requires PREFECT_SERVER_API_AUTH_STRING (`auth.ensure_server_auth` sets it). It is this
    process's own child: it gets SIGTERM when this process dies, however it dies
    (`lifetime.die_with_parent`), so it never outlives `run`, `serve` or `demo`.
    `started`: one already starting (`LocalServer`), waited on and stopped here.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield ui_url_for(os.environ["PREFECT_API_URL"])
        return
    server = started or LocalServer(port, host, ui)
    hurry = False
    try:
        yield server.ready(heartbeats)
    except KeyboardInterrupt:  # SIGINT or SIGTERM: the user is waiting for the prompt
        hurry = True
        raise
    finally:
        server.stop(hurry)


def _use_api(api: str | None, heartbeats: bool = True) -> None:
    """Point this process's Prefect clients at `api` (None: back to unset), imported already or not."""
    if api is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = api
    if "prefect.context" in sys.modules or not heartbeats:  # settings are read once at import: re-read them
        import prefect.context

        prefect.context.refresh_global_settings_context()  # Prefect's own way
        if not heartbeats:  # no environment value means "none" (its default is 180 s): set in the settings
            from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

            current = prefect.context.GLOBAL_SETTINGS_CONTEXT
            prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.SettingsContext(
                profile=current.profile, settings=current.settings.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))  # fmt: skip


def _flush_run_logs(timeout: float = 10) -> None:
    """Send buffered flow-run logs and events to the server while it is still there to receive them."""
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=timeout)
    except Exception:
        pass


def _wait_healthy(api: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssetlineError("prefect server", f"exited with code {proc.returncode} (log: {log_path})")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _stop(proc)
    raise AssetlineError("prefect server", f"not healthy after {STARTUP_TIMEOUT_S} s (log: {log_path})")


def _stop(proc: subprocess.Popen, grace: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
