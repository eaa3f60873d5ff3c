"""Nobody gets in who should not: a server reachable beyond loopback requires Prefect's basic auth.

The quick tests check the rules (what counts as loopback, the refusal, the
string made once at 0600 and reused). The slow one starts `assetline serve
--host 0.0.0.0` for real: requests without the string are refused (401), its
own runs authenticate end to end, and `assetline watch` and `assetline review`
on the same machine authenticate with the string serve stored.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers import Serve, photo, run_cli, stop_group, wait_until
from helpers.serve import _wait

AUTH_VARS = ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_URL")


@pytest.fixture
def bare_env(tmp_path):
    """No auth string and no server configured, a Prefect home of the test's own; all restored after."""
    saved = dict(os.environ)
    for name in AUTH_VARS:
        os.environ.pop(name, None)
    os.environ["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    yield tmp_path / "prefect-home"
    os.environ.clear()
    os.environ.update(saved)
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_recognised(host):
    from assetline.auth import is_loopback

    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "media-server.example", "server"])
def test_addresses_beyond_loopback_are_not(host):
    from assetline.auth import is_loopback

    assert not is_loopback(host)


def test_a_local_server_beyond_loopback_refuses_to_start_without_an_auth_string(bare_env):
    from assetline.errors import AssetlineError
    from assetline.server import prefect_server

    with pytest.raises(AssetlineError, match="PREFECT_SERVER_API_AUTH_STRING"):
        with prefect_server(port=0, host="0.0.0.0", ui=False):
            pass
    assert not (bare_env / "server.log").exists()  # refused before anything started


def test_serve_makes_an_auth_string_once_at_0600_and_reuses_it(bare_env):
    from assetline.auth import AUTH_FILE, ensure_server_auth

    first = ensure_server_auth()
    stored = bare_env / AUTH_FILE
    assert first.made and first.where == str(stored)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    user, _, password = stored.read_text().strip().partition(":")
    assert user == "admin" and len(password) >= 32
    made = stored.read_text().strip()
    assert os.environ["PREFECT_SERVER_API_AUTH_STRING"] == os.environ["PREFECT_API_AUTH_STRING"] == made

    for name in ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING"):
        os.environ.pop(name)
    again = ensure_server_auth()
    assert not again.made and again.where == str(stored)
    assert os.environ["PREFECT_SERVER_API_AUTH_STRING"] == made


def test_a_configured_auth_string_is_used_and_nothing_is_stored(bare_env):
    from assetline.auth import AUTH_FILE, ensure_server_auth

    os.environ["PREFECT_SERVER_API_AUTH_STRING"] = "ops:from-a-secret"
    used = ensure_server_auth()
    assert not used.made and used.where == "PREFECT_SERVER_API_AUTH_STRING"
    assert os.environ["PREFECT_API_AUTH_STRING"] == "ops:from-a-secret"  # serve's own clients send the same
    assert not (bare_env / AUTH_FILE).exists()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """`assetline serve --host 0.0.0.0` with no auth string configured: it makes one."""
    serve = Serve(tmp_path_factory.mktemp("auth"), "--host", "0.0.0.0")
    yield serve
    if serve.proc.poll() is None:
        serve.stop()


@pytest.mark.slow
def test_serve_beyond_loopback_says_where_its_auth_string_is(exposed):
    stored = exposed.root / "prefect-home" / "api-auth-string"
    log = exposed.log.read_text()
    assert f"made a new one, stored in {stored}" in log
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert exposed.auth_string == stored.read_text().strip()


@pytest.mark.slow
def test_requests_without_the_auth_string_are_refused(exposed):
    body = {"limit": 1}
    assert httpx.post(f"{exposed.api}/flow_runs/filter", json=body, timeout=30).status_code == 401
    assert httpx.post(f"{exposed.api}/flow_runs/filter", json=body, auth=("admin", "guessed"), timeout=30).status_code == 401
    assert httpx.post(f"{exposed.api}/artifacts/filter", json=body, timeout=30).status_code == 401
    assert httpx.get(f"{exposed.api}/health", timeout=30).status_code == 200  # probes stay open
    assert exposed.client.post("/flow_runs/filter", json=body).status_code == 200


@pytest.mark.slow
def test_serve_beyond_loopback_delivers_its_own_runs_authenticated(exposed, tmp_path):
    source = tmp_path / "coffee.jpg"
    photo("coffee", (120, 90)).save(source, quality=90)
    exposed.drop(source)
    run = exposed.wait_finished("coffee.jpg")
    assert run["state_type"] == "COMPLETED", (run["state"] or {}).get("message")
    folders = list(exposed.out.glob("coffee-*"))
    assert len(folders) == 1 and (folders[0] / "upscaled.png").is_file()
    assert exposed.artifacts(run["id"])  # the flow-run process reported back through the API too


@pytest.mark.slow
def test_the_server_keeps_flow_runs_and_events_for_a_bounded_time(exposed):
    settings = exposed.client.get("/admin/settings").json()
    vacuum = settings["server"]["services"]["db_vacuum"]
    assert set(vacuum["enabled"]) >= {"events", "flow_runs"}
    assert vacuum["retention_period"] == "P30D"  # flow runs, with their logs, task runs and artifacts
    assert settings["server"]["events"]["retention_period"] == "P7D"  # Prefect's own default, kept


@pytest.mark.slow
def test_watch_and_review_on_that_machine_authenticate_with_the_stored_string(exposed, tmp_path):
    home = {"PREFECT_HOME": str(exposed.root / "prefect-home")}
    listed = run_cli("review", "list", "--out", str(exposed.out), api_url=exposed.api, env=home)
    assert listed.returncode == 0 and "not reachable" not in listed.stdout + listed.stderr, listed.stdout + listed.stderr
    refused = run_cli("review", "list", "--out", str(exposed.out), api_url=exposed.api,
                      env={**home, "PREFECT_API_AUTH_STRING": "admin:wrong"})  # fmt: skip
    assert "refused the credentials (401: set PREFECT_API_AUTH_STRING)" in refused.stdout + refused.stderr

    inbox = tmp_path / "elsewhere"
    inbox.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(home, PREFECT_API_URL=exposed.api)
    with open(tmp_path / "watch.log", "w") as log:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "assetline.cli", "watch", "--inbox", str(inbox), "--set", "inbox.hold_seconds=0.5"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until("watch to start", lambda: "watching" in (tmp_path / "watch.log").read_text() or watcher.poll() is not None, 120)
        assert watcher.poll() is None, (tmp_path / "watch.log").read_text()
        dropped = inbox / "rocket.jpg"
        photo("rocket", (80, 60)).save(dropped, quality=90)
        sha256 = hashlib.sha256(dropped.read_bytes()).hexdigest()

        def announced():
            body = {"filter": {"event": {"name": ["assetline.asset.arrived"]}}, "limit": 50}
            events = exposed.client.post("/events/filter", json=body).json()["events"]
            return [e for e in events if e["payload"].get("sha256") == sha256]

        assert _wait("the watcher's event on the server", announced)
    finally:
        stop_group(watcher)
