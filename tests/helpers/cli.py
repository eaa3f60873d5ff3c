"""Running `assetline` as a user does, in a subprocess, and proving a folder was left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


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
