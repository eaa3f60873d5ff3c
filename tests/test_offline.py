"""The offline guarantee: a run reaches nothing beyond this machine.

The whole suite runs under tests/netguard.py (installed by conftest in the test
process and, through PYTHONPATH, in every Python process a test starts): only
loopback and AF_UNIX connections are let through, anything else is refused and
recorded, and any test during which something tried fails. The tests here check
the guard itself, then a full mixed `assetline run` with its own record, then a
run in a network namespace of its own (`unshare -n`, only `lo` up), where ffmpeg
and every other native program are cut off too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import netguard
from helpers import REPO, make_clip, photo, run_cli

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"
TEST_NET = "192.0.2.1"  # RFC 5737 documentation address: never a real host


def mixed_inputs(folder: Path, clip: bool = True) -> Path:
    folder.mkdir()
    photo("chelsea", (64, 48)).save(folder / "still.jpg", quality=90)
    shutil.copy(SPEECH, folder / "speech.wav")
    if clip:
        make_clip(folder / "clip.mp4", audio=None, seconds=1.0)
    return folder


def test_the_guard_refuses_and_records_remote_connections_and_lets_loopback_through(tmp_path, monkeypatch):
    log = tmp_path / "attempts.jsonl"
    monkeypatch.setenv(netguard.LOG_ENV, str(log))
    with pytest.raises(ConnectionRefusedError, match="network guard"):
        socket.create_connection((TEST_NET, 80), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(ConnectionRefusedError):
        udp.sendto(b"x", (TEST_NET, 53))
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp6:
        assert tcp6.connect_ex(("2001:db8::1", 80, 0, 0)) != 0
    assert [a["kind"] for a in netguard.attempts(log)] == ["connect", "getaddrinfo", "sendto", "connect_ex"]

    with socket.create_server(("127.0.0.1", 0)) as server:  # loopback is let through
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    assert len(netguard.attempts(log)) == 4

    # A Python child gets the guard from PYTHONPATH (sitecustomize) and records into the file it is given.
    child_log, installs = tmp_path / "child.jsonl", tmp_path / "installs"
    env = netguard.subprocess_env(child_log)
    env[netguard.INSTALLS_ENV] = str(installs)
    code = f"import socket\ntry:\n    socket.create_connection(({TEST_NET!r}, 443), timeout=5)\nexcept OSError as e:\n    print(e)"
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "network guard" in child.stdout, child.stdout + child.stderr
    assert [a["target"] for a in netguard.attempts(child_log)] == [repr((TEST_NET, 443))]
    assert len(installs.read_text().splitlines()) == 1


def test_a_full_mixed_run_attempts_no_connection_beyond_loopback(tmp_path, prefect_api):
    inputs = mixed_inputs(tmp_path / "in")
    log, installs = tmp_path / "attempts.jsonl", tmp_path / "installs"
    result = run_cli("run", str(inputs), "--out", str(tmp_path / "out"), api_url=prefect_api,
                     env={netguard.LOG_ENV: str(log), netguard.INSTALLS_ENV: str(installs)})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 done, 0 up to date, 0 failed" in result.stdout
    assert any("assetline.cli" in line for line in installs.read_text().splitlines())  # the guard was in the CLI
    assert netguard.attempts(log) == []


def _unshare_prefix() -> list[str]:
    """`unshare -n` (or `-rn` unprivileged) with `lo` brought up; skip where it is not permitted."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        pytest.skip("needs util-linux `unshare` and iproute2 `ip`")
    flags = "-n" if os.geteuid() == 0 else "-rn"
    probe = subprocess.run([unshare, flags, "sh", "-c", f"{ip} link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace here (unshare {flags}: {probe.stderr.strip() or probe.returncode})")
    return [unshare, flags, "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh"]


def test_a_run_in_a_network_namespace_without_any_network_completes(tmp_path):
    """Only `lo` exists: ffmpeg, the models and Prefect's temporary server must all do without a network."""
    prefix = _unshare_prefix()
    inputs = mixed_inputs(tmp_path / "in", clip=False)
    out, log = tmp_path / "out", tmp_path / "attempts.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    env.update({netguard.LOG_ENV: str(log), "PREFECT_HOME": str(tmp_path / "prefect-home")})
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.run([*prefix, sys.executable, "-m", "assetline.cli", "run", str(inputs), "--out", str(out)],
                              stdout=stdout, stderr=subprocess.STDOUT, text=True, env=env, timeout=1800)  # fmt: skip
        stdout.seek(0)
        text = stdout.read()
    assert proc.returncode == 0, text
    assert "2 done, 0 up to date, 0 failed" in text, text
    assert netguard.attempts(log) == []
    assert run_cli("verify", str(out), api_url=None).returncode == 0
