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
from helpers import REPO, photo  # noqa: E402,F401  (REPO, photo: for the fixtures below)

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


_SUBTITLES_SEEN: set[Path] = set()  # subtitle files checked after their test, or left alone by its marker


@pytest.fixture(autouse=True)
def subtitles_pass_the_rules(request):
    """After each test, every subtitles*.srt/.vtt/.ttml under its tmp_path passes the broadcast rule checker
    (tests/helpers/subtitle_rules.py), each broken rule counted in the file's sidecar; a test that writes
    broken files on purpose opts out with `@pytest.mark.unchecked_subtitles`."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is None or not folder.exists():
        return
    from helpers.subtitle_rules import check_file, subtitle_files

    files = subtitle_files(folder)
    _SUBTITLES_SEEN.update(files)
    if request.node.get_closest_marker("unchecked_subtitles"):
        return
    problems = [problem for path in files for problem in check_file(path)]
    if problems:
        pytest.fail("subtitles break the broadcast rules: " + " | ".join(problems[:5]), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def session_subtitles_pass_the_rules(tmp_path_factory):
    """At the end of the session, the same check for subtitle files in folders made by wider fixtures
    (tmp_path_factory: a module's one run of `assetline run`), which no single test's tmp_path holds."""
    yield
    from helpers.subtitle_rules import check_file, subtitle_files

    base = tmp_path_factory.getbasetemp()
    problems = [
        f"{path.relative_to(base)}: {problem}"
        for path in subtitle_files(base)
        if path not in _SUBTITLES_SEEN
        for problem in check_file(path)
    ]
    if problems:
        pytest.fail("subtitles break the broadcast rules: " + " | ".join(problems[:5]), pytrace=False)


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


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with two small real photos (kept small so upscaling stays quick)."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo("chelsea", (192, 128)).save(folder / "chelsea.jpg", quality=92)
    photo("astronaut", (160, 160)).save(folder / "astronaut.png")
    return folder


def pytest_collection_modifyitems(config, items):
    """Every test on the session's Prefect server is `slow` too, so `pytest -m "not slow"` is the quick loop."""
    for item in items:
        if "prefect_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
