"""Who may use the Prefect API: Prefect's own basic auth, required once the server is reachable beyond loopback.

The server checks `PREFECT_SERVER_API_AUTH_STRING` (user:password) on every
request but /health; each client sends `PREFECT_API_AUTH_STRING`. `serve
--host` on a non-loopback address uses the configured string, or makes one
(admin:<random>) and stores it at mode 0600 in AUTH_FILE under the Prefect
home, where `watch`, `review` and the flow-run processes on this machine read
it when PREFECT_API_AUTH_STRING is unset (`prefect_env.configure`).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from assetline.prefect_env import prefect_home

AUTH_FILE = "api-auth-string"
SERVER_VAR = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_VAR = "PREFECT_API_AUTH_STRING"


@dataclass(frozen=True)
class ServerAuth:
    """The auth string a server will require, where it came from, and whether it was made just now."""

    where: str  # an environment variable, or the file's path
    made: bool


def auth_file() -> Path:
    return prefect_home() / AUTH_FILE


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def stored_auth_string() -> str | None:
    """The auth string `serve` stored on this machine, or None."""
    try:
        text = auth_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def ensure_server_auth() -> ServerAuth:
    """Make sure the local server requires an auth string and this process's clients send it.

    The string is PREFECT_SERVER_API_AUTH_STRING, else PREFECT_API_AUTH_STRING
    (from the environment or a Prefect profile), else the stored file, else a
    new random `admin:<token>` written to the file at mode 0600. Both variables
    are then set in this process's environment, which the server and the
    flow-run processes inherit.
    """
    from prefect.settings import Settings

    current = Settings()  # read afresh: the environment and the active profile as they are now
    configured = [(SERVER_VAR, current.server.api.auth_string), (CLIENT_VAR, current.api.auth_string)]
    found = next(((name, s.get_secret_value()) for name, s in configured if s and s.get_secret_value()), None)
    if found:
        where, value, made = found[0], found[1], False
    elif stored := stored_auth_string():
        where, value, made = str(auth_file()), stored, False
    else:
        value = f"admin:{secrets.token_urlsafe(24)}"
        _write_private(auth_file(), value + "\n")
        where, made = str(auth_file()), True
    os.environ[SERVER_VAR] = value
    os.environ[CLIENT_VAR] = value
    if "prefect.context" in sys.modules:  # settings are read once at import; Prefect's own way to re-read them
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    return ServerAuth(where, made)


def load_client_auth() -> None:
    """PREFECT_API_AUTH_STRING from the stored file when the environment has none (before Prefect is imported)."""
    if not os.environ.get(CLIENT_VAR) and (stored := stored_auth_string()):
        os.environ[CLIENT_VAR] = stored


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner can read (0600 from the start, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
