"""Child processes never outlive assetline: the kernel signals them when the process that started them dies.

`assetline run`, `serve` and `demo` start a Prefect server and ffmpeg processes.
A SIGKILL of assetline (a user's kill -9, the OOM killer) runs no Python at
all, so no cleanup code can stop them: the parent-death signal is set in each
child instead (Linux's PR_SET_PDEATHSIG), and the kernel delivers it however
the parent ends. It fires when the *thread* that started the child exits:
children are started from a thread that waits for them (the main thread for
the server, the step's own thread for ffmpeg).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: the child gets `sig` when its parent dies (no-op where prctl is missing)."""

    def preexec() -> None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
        except (OSError, AttributeError):
            pass

    return preexec
