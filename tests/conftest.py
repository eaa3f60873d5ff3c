"""Shared test set-up: real photos (scikit-image), real models (the pinned cache), one Prefect server.

Models come from the cache `make install` filled (`assetline models pull`);
when it is empty the session pulls them once, from the same pinned sources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="assetline-test-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")
# Signing keys of the session's own (made by the `signing_keys` fixture), never the user's:
# every run and verify here, in this process and in children, uses them.
_KEYS = Path(tempfile.mkdtemp(prefix="assetline-test-keys-")) / "keys"
os.environ["ASSETLINE_KEYS"] = str(_KEYS)
for _name in ("ASSETLINE_SIGNING_CERT", "ASSETLINE_SIGNING_KEY", "ASSETLINE_TRUST_ANCHORS", "ASSETLINE_TSA_URL"):
    os.environ.pop(_name, None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import netguard  # noqa: E402
from assetline import models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NETGUARD_LOG = Path(tempfile.mkdtemp(prefix="assetline-netguard-")) / "attempts.jsonl"


@pytest.fixture(scope="session", autouse=True)
def pulled_models() -> Path:
    """Every registered model, verified, in the cache (pulled once if missing)."""
    missing = [s.name for s in models.REGISTRY.values() if models.status(s) != "present"]
    if missing:
        models.pull(missing)
    return models.cache_root()


@pytest.fixture(scope="session", autouse=True)
def network_guard(pulled_models) -> Path:
    """Tests run offline: only loopback and AF_UNIX connections, here and in every Python child.

    Installed once the models are in the cache (a first pull may need the
    registry); every refused attempt is recorded in `NETGUARD_LOG` (see netguard.py).
    """
    env = netguard.subprocess_env(NETGUARD_LOG)
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    os.environ[netguard.LOG_ENV] = str(NETGUARD_LOG)
    netguard.install()
    return NETGUARD_LOG


@pytest.fixture(autouse=True)
def no_network_attempted(network_guard: Path):
    """Fail any test during which something tried to reach beyond this machine."""
    before = len(netguard.attempts(network_guard))
    yield
    new = netguard.attempts(network_guard)[before:]
    if new:
        shown = "; ".join(f"{a['kind']} {a['target']} (pid {a['pid']}, from {a['stack'][-1:]})" for a in new[:5])
        pytest.fail(f"{len(new)} attempt(s) to reach the network: {shown}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def signing_keys() -> Path:
    """The session's development CA and signing key (`assetline keys init` into a temporary folder)."""
    from assetline.keys import init_keys

    if not (_KEYS / "signer.key").exists():
        init_keys(_KEYS)
    return _KEYS


@pytest.fixture(scope="session")
def prefect_api(network_guard) -> str:
    """One real Prefect server for the whole session; returns its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def photo(name: str, size: tuple[int, int] | None = None) -> Image.Image:
    """A real photo shipped by scikit-image: astronaut, chelsea, coffee, rocket."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)())
    return img.resize(size, Image.Resampling.LANCZOS) if size else img


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with two small real photos (kept small so upscaling stays quick)."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo("chelsea", (192, 128)).save(folder / "chelsea.jpg", quality=92)
    photo("astronaut", (160, 160)).save(folder / "astronaut.png")
    return folder


def run_cli(*args: str, api_url: str | None, cwd: Path | None = None, env: dict | None = None,
            user: int | None = None) -> subprocess.CompletedProcess:
    """`assetline ARGS...` in a subprocess, against `api_url` (None: Prefect's temporary server)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    full_env.update(env or {})  # the CLI's own console settings apply, as for a user
    if api_url:
        full_env["PREFECT_API_URL"] = api_url
    # Output goes to files, not pipes: a child process left behind (a stray server) would
    # hold a pipe open and hang the test instead of letting it fail.
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "assetline.cli", *args],
            stdout=stdout, stderr=stderr, text=True, cwd=cwd, env=full_env, timeout=1800, user=user,
        )  # fmt: skip
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.read(), stderr.read())


def tree_state(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `folder` with its size, mtime and bytes: to prove nothing changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# Helpers for the tests that start servers and processes of their own (serve, workers, restarts).


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

