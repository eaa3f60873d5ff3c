"""Heavy models loaded once per process (rembg sessions, ncnn nets, Whisper), and the CPU threads each may use.

One thread policy for the three libraries (onnxruntime, ncnn, CTranslate2):
`threads_per_asset()`, the cores this process may use split between the assets
in flight. Each loader passes it to its library and ends its cache key with it,
so an object made with half the cores (two assets in flight) is never handed to
a run that has the machine to itself, nor the other way round.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from assetline.settings import settings

T = TypeVar("T")

# key -> loaded model. A key names the library first and ends with the thread count the object was made with.
items: dict[tuple, object] = {}
_lock = threading.Lock()

# Set by a batch in this process (`set_parallel_assets`); None: `$ASSETLINE_PARALLEL_ASSETS` decides,
# which `serve` sets for the flow-run processes it starts.
_parallel_assets: int | None = None


def get(key: tuple, make: Callable[[], T]) -> T:
    """The object cached under `key`, made by `make()` the first time (once, however many threads ask at once)."""
    with _lock:
        if key not in items:
            items[key] = make()
        return items[key]  # type: ignore[return-value]


def clear() -> None:
    """Forget every loaded model: each is loaded again on next use."""
    with _lock:
        items.clear()


def set_parallel_assets(count: int | None) -> None:
    """Tell model loaders how many assets run at once in this process, so they split the cores between them.

    None hands the decision back to `$ASSETLINE_PARALLEL_ASSETS` (1 when unset).
    """
    global _parallel_assets
    _parallel_assets = None if count is None else max(1, count)


def parallel_assets() -> int:
    """Assets in flight in this process: the last `set_parallel_assets`, else `$ASSETLINE_PARALLEL_ASSETS`."""
    return _parallel_assets if _parallel_assets is not None else max(1, settings().parallel_assets)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container or `taskset` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_asset() -> int:
    """CPU threads one model run may use: the usable cores shared by the assets in flight, at least 1.

    Two assets each running a model with every core's worth of threads
    oversubscribe the machine and run slower than splitting it.
    """
    return max(1, usable_cores() // parallel_assets())
