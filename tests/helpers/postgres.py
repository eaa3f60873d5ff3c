"""A real PostgreSQL of the test's own: initdb into a temporary folder, its own port and socket, stopped after.

Debian's `postgresql` (15; `make test-deps` installs it when running as root).
As root the cluster belongs to the `postgres` user, since the server refuses to
run as root. Trust authentication, on loopback and the folder's own unix
socket only; fsync off, since the data is thrown away with the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.processes import free_port

DATABASE = "prefect"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


@contextmanager
def postgres_database(log_dir: Path | None = None) -> Iterator[str]:
    """A running PostgreSQL with an empty database for Prefect; yields its `postgresql+asyncpg://` URL."""
    import pytest

    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL here (initdb, pg_ctl): `make test-deps` installs Debian's postgresql as root")
    root = Path(tempfile.mkdtemp(prefix="assetline-pg-"))  # under /tmp: the postgres user must reach it
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = root / "postgres.log"

    def run(*args: str) -> None:
        done = subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, cwd=root,
                              user=owner.pw_uid if owner else None, group=owner.pw_gid if owner else None,
                              extra_groups=[] if owner else None)  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")

    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        run("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
        run("pg_ctl", "-D", str(root / "data"), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        run("createdb", "-h", str(root), "-p", str(port), "-U", "postgres", DATABASE)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (root / "data" / "postmaster.pid").exists():
            try:
                run("pg_ctl", "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass
        if log_dir is not None and log.exists():
            shutil.copyfile(log, log_dir / "postgres.log")
        shutil.rmtree(root, ignore_errors=True)
