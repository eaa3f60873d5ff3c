"""Prefect settings assetline needs, applied before Prefect is imported.

Offline machines: no telemetry. A home of assetline's own (unless the user set
one), so runs, the SQLite database and logs don't land in a shared ~/.prefect.
The API auth string `serve` stored there is sent when none is set (`assetline.auth`).
Console logging from flow runs is kept quiet in the CLI: the UI has the logs.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path(user_data_dir("assetline")) / "prefect")


def configure(quiet_console: bool = True) -> None:
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_CLI_PROMPT", "false")
    from assetline.auth import load_client_auth

    load_client_auth()
    if quiet_console:
        # Only the console handler is quietened: flow and task logs still reach the API (and the UI).
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")
