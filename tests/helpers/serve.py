"""`assetline serve` in a process of its own, for the tests and benchmarks that drive it through the API."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

from helpers.processes import free_port, wait_until

STARTUP_S = 180  # bounds for hangs, not performance limits
SETTLE_S = 300


class Serve:
    def __init__(self, root: Path, *extra: str, env: dict[str, str] | None = None):
        self.root = root
        self.inbox = root / "inbox"
        self.out = root / "out"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log = root / "serve.log"
        skipped = ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")
        env_vars = {k: v for k, v in os.environ.items() if k not in skipped}
        env_vars["PREFECT_HOME"] = str(root / "prefect-home")
        env_vars.update(env or {})
        self.inbox.mkdir(parents=True)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "assetline.cli", "serve", "--inbox", str(self.inbox), "--out", str(self.out),
                 "--port", str(self.port), "--set", "inbox.hold_seconds=0.5", "--set", "inbox.poll_seconds=0.25", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env_vars, start_new_session=True,
            )  # fmt: skip
        _wait("serve to start", lambda: self.proc.poll() is not None or "stop with Ctrl-C" in self.log.read_text(), STARTUP_S)
        assert self.proc.poll() is None, self.log.read_text()
        # Authenticated as assetline's own clients are: the variable, else the string serve stored in its home.
        stored = Path(env_vars["PREFECT_HOME"]) / "api-auth-string"
        self.auth_string = (env_vars.get("PREFECT_API_AUTH_STRING") or env_vars.get("PREFECT_SERVER_API_AUTH_STRING")
                            or (stored.read_text().strip() if stored.exists() else None))  # fmt: skip
        auth = httpx.BasicAuth(*self.auth_string.split(":", 1)) if self.auth_string else None
        self.client = httpx.Client(base_url=self.api, timeout=30, auth=auth)
        # The catch-up batch at start: let it finish, so each test's file reaches only its own trigger.
        _wait("the catch-up batch", lambda: any(r["state_type"] == "COMPLETED" for r in self.flow_runs("batch-inbox")), STARTUP_S)

    def drop(self, source: Path, name: str | None = None) -> Path:
        """Copy in under a partial name, then rename: how rsync, browsers and transfer tools deliver."""
        final = self.inbox / (name or source.name)
        partial = final.with_name(final.name + ".part")
        shutil.copyfile(source, partial)
        os.replace(partial, final)
        return final

    def flow_runs(self, flow_name: str = "process-asset") -> list[dict]:
        body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
        return self.client.post("/flow_runs/filter", json=body).json()

    def finished(self, flow_name: str = "process-asset") -> list[dict]:
        return [r for r in self.flow_runs(flow_name) if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]

    def runs_for(self, name: str) -> list[dict]:
        return [r for r in self.flow_runs() if r["parameters"].get("path", "").endswith(name)]

    def wait_finished(self, name: str) -> dict:
        return _wait(f"a finished run for {name}", lambda: next(
            (r for r in self.runs_for(name) if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")), None))  # fmt: skip

    def artifacts(self, flow_run_id: str) -> list[dict]:
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
        return self.client.post("/artifacts/filter", json=body).json()

    def post_event(self, payload: dict) -> int:
        event = {
            "id": str(uuid.uuid4()),
            "occurred": datetime.now(timezone.utc).isoformat(),
            "event": "assetline.asset.arrived",
            "resource": {"prefect.resource.id": "assetline.asset.from-another-system"},
            "payload": payload,
        }
        return self.client.post("/events", json=[event]).status_code

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def _wait(what: str, check, timeout: float = SETTLE_S, every: float = 0.5):
    return wait_until(what, check, timeout, every)
