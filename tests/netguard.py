"""A network guard for the test suite: only loopback and local (AF_UNIX) connections are let through.

Any other connection, datagram or name lookup is refused (as the network being
down would refuse it) and recorded, one JSON line per attempt, in the file
`$ASSETLINE_NETGUARD_LOG`. The suite installs it in its own process and, through
`tests/netguard_site/sitecustomize.py` on `PYTHONPATH`, in every Python process
a test starts (the CLI, Prefect's servers, pip), so a test can assert that a
whole `assetline run` tried to reach nothing beyond this machine.

Only Python's socket layer is guarded: ffmpeg and other native programs are
not. `unshare -n` (tests/test_offline.py) cuts those off too, where permitted.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import threading
import traceback

LOG_ENV = "ASSETLINE_NETGUARD_LOG"
INSTALLS_ENV = "ASSETLINE_NETGUARD_INSTALLS"  # optional: a file each guarded process adds its pid to
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netguard_site")

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_lock = threading.Lock()
_installed = False
_original: dict[str, object] = {}


class NetworkBlocked(ConnectionRefusedError):
    """Raised in place of a connection the guard refuses (a ConnectionRefusedError, as a cut network gives)."""


def is_local_host(host: object) -> bool:
    """True for loopback addresses and the names of this machine's loopback; False for anything else."""
    if host is None or host == "":
        return True  # getaddrinfo(None, port): the wildcard / loopback, never a remote host
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.split("%", 1)[0].strip("[]").lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _is_numeric(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0].strip("[]"))
        return True
    except ValueError:
        return False


def is_allowed(family: int, address: object) -> bool:
    """Whether a connection of `family` to `address` stays on this machine."""
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) and address else address
        return is_local_host(host)
    return family not in (getattr(socket, "AF_PACKET", -1),)  # netlink and the like are local


def _record(kind: str, target: object) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    frames = traceback.format_stack(limit=12)[:-2]
    entry = {
        "pid": os.getpid(),
        "kind": kind,
        "target": repr(target),
        "stack": [line.strip().splitlines()[0] for line in frames][-6:],
    }
    data = (json.dumps(entry) + "\n").encode()
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _refuse(kind: str, target: object) -> NetworkBlocked:
    _record(kind, target)
    return NetworkBlocked(errno.ECONNREFUSED, f"network guard: {kind} to {target!r} refused (tests run offline)")


def install() -> None:
    """Patch the socket layer of this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    sock_cls = socket.socket
    _original.update(
        connect=sock_cls.connect,
        connect_ex=sock_cls.connect_ex,
        sendto=sock_cls.sendto,
        getaddrinfo=socket.getaddrinfo,
    )
    connect, connect_ex, sendto, getaddrinfo = (_original[k] for k in ("connect", "connect_ex", "sendto", "getaddrinfo"))

    def guarded_connect(self, address):
        if not is_allowed(self.family, address):
            raise _refuse("connect", address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if not is_allowed(self.family, address):
            _record("connect_ex", address)
            return errno.ECONNREFUSED
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        address = args[-1] if args else None
        if address is not None and not is_allowed(self.family, address):
            raise _refuse("sendto", address)
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not is_local_host(host) and not _is_numeric(host):  # a numeric address needs no lookup: connect decides
            _record("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused (tests run offline)")
        return getaddrinfo(host, *args, **kwargs)

    sock_cls.connect = guarded_connect
    sock_cls.connect_ex = guarded_connect_ex
    sock_cls.sendto = guarded_sendto
    socket.getaddrinfo = guarded_getaddrinfo
    installs = os.environ.get(INSTALLS_ENV)
    if installs:  # lets a test prove the guard was in every process it started
        try:  # sys.argv is not final yet when sitecustomize runs (`-m` is still there)
            with open("/proc/self/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            import sys

            command = " ".join(sys.argv)
        line = f"{os.getpid()} {' '.join(command.split())}\n".encode()
        fd = os.open(installs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def attempts(path: str | os.PathLike) -> list[dict]:
    """Every attempt recorded in the log at `path` (none when it does not exist)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def subprocess_env(log: str | os.PathLike, env: dict | None = None) -> dict:
    """`env` (default: this process's) with the guard installed in Python children, logging to `log`."""
    full = dict(os.environ if env is None else env)
    paths = [SITE_DIR] + [p for p in full.get("PYTHONPATH", "").split(os.pathsep) if p and p != SITE_DIR]
    full["PYTHONPATH"] = os.pathsep.join(paths)
    full[LOG_ENV] = str(log)
    return full
