"""Processes, ports and waiting: for the tests that start servers, serve, workers and kill them."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float, every: float = 0.5):
    """Poll `check` until it returns something truthy (returned); a bound against hangs, not a speed limit."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def api_healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM a process started with start_new_session, and its group; SIGKILL what outlives `timeout`."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def processes_with_env(key: str, value: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{key}={value}".encode() in env:
            found.append(int(proc.name))
    return found


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def drop_dac_capabilities() -> None:
    """In the child, before exec: root loses the right to bypass file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


def can_drop_dac_capabilities() -> bool:
    """Whether this process may drop those capabilities in a child (root in most containers)."""
    probe = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop_dac_capabilities)  # noqa: PLW1509
    return probe.returncode == 0
