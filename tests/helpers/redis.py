"""A real Redis of the test's own: Debian's `redis-server` on loopback, its own port and folder, a password (hex: no leading dash for argv).

`make test-deps` installs Debian's redis-server when running as root. Nothing is
saved to disk (no RDB, no AOF): the data goes with the folder. The password is
made per run, as a secret would be, so nothing reaches Redis without it.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import free_port


@dataclass(frozen=True)
class Redis:
    port: int
    password: str

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def ping(self, password: str | None = None) -> str:
        """What `redis-cli PING` answers with `password` (this server's own by default)."""
        done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning",
                               "-a", self.password if password is None else password, "PING"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        return (done.stdout + done.stderr).strip()


def high_availability_env(redis: Redis) -> dict[str, str]:
    """What every Prefect server process of the high-availability set-up needs beside Postgres (README, compose).

    Events, the automation triggers' cache and causal ordering, the concurrency leases (the per-asset lock), the
    worker cleanup queue and Docket (which runs each background service loop once across processes) all go
    through Redis instead of one process's memory, so any API server takes any request and one services process
    sees every event. Migrations run once, before the servers start, not in each one.
    """
    return {
        "PREFECT_SERVER_EVENTS_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
        "PREFECT_REDIS_MESSAGING_URL": redis.url(0),
        "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_URL": redis.url(0),
        "PREFECT_SERVER_DOCKET_URL": redis.url(1),
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    }


@contextmanager
def redis_server(log_dir: Path | None = None) -> Iterator[Redis]:
    import pytest

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server here: `make test-deps` installs Debian's redis-server as root")
    root = Path(tempfile.mkdtemp(prefix="assetline-redis-"))
    server = Redis(port=free_port(), password=secrets.token_hex(16))
    log = root / "redis.log"
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(server.port), "--requirepass", server.password,
                             "--dir", str(root), "--save", "", "--appendonly", "no", "--logfile", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while server.ping() != "PONG":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {log.read_text()[-2000:] if log.exists() else ''}")
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_dir is not None and log.exists():
            shutil.copyfile(log, log_dir / "redis.log")
        shutil.rmtree(root, ignore_errors=True)
