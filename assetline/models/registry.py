"""Every model by name: the built-ins and the user's own, read from the user's list on first use.

`REGISTRY` maps names to `ModelSpec`s; `get_spec` is the lookup with a one-line
error; `add_user_model` pins a folder of the user's and registers it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

from assetline.errors import ModelError
from assetline.models.specs import BUILT_INS, ModelSpec
from assetline.models.user_models import UserModelsError, load_user_models, write_user_model


class _Registry(MutableMapping):
    """Every model by name: the built-ins, then the user's own, read from the user's model list on first use.

    Nothing is read at import, so a corrupt or unreadable list never stops
    `--help`, `--version` or the `models add` that mends it. When the list cannot
    be used, the registry holds the built-ins only and `problem` says why (one
    line); `require`, `pull`, and `get_spec` of a name that is not built in raise it.
    """

    def __init__(self, built_in: dict[str, ModelSpec]) -> None:
        self._built_in = dict(built_in)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget the user's models: the list is read again on next use."""
        with self._lock:
            self._specs = dict(self._built_in)
            self._loaded = False
            self.problem: UserModelsError | None = None

    def _load(self) -> dict[str, ModelSpec]:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    try:
                        user = load_user_models()
                    except UserModelsError as exc:
                        user, self.problem = {}, exc
                    for name, spec in user.items():
                        self._specs.setdefault(name, spec)
                    self._loaded = True
        return self._specs

    def __getitem__(self, name: str) -> ModelSpec:
        return self._load()[name]

    def __setitem__(self, name: str, spec: ModelSpec) -> None:
        self._load()[name] = spec

    def __delitem__(self, name: str) -> None:
        del self._load()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"ModelRegistry({sorted(self._load())!r})"


REGISTRY = _Registry(BUILT_INS)


def user_models_problem() -> UserModelsError | None:
    """Why the user's model list cannot be used (read now if it was not yet), or None when it can."""
    REGISTRY._load()
    return REGISTRY.problem


def check_user_models() -> None:
    """Raise `UserModelsError` when the user's model list cannot be used: commands that need models stop here."""
    problem = user_models_problem()
    if problem is not None:
        raise problem


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        check_user_models()  # a name not found may be in the list that could not be read
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(name, f"unknown model (known: {known})") from None


def add_user_model(name: str, family: str, folder: Path, use: str = "",
                   report: Callable[[str], None] = lambda line: None) -> ModelSpec:  # fmt: skip
    """Register a folder of the user's own (a bigger Whisper, another rembg model) under `name`.

    Every file in it is hashed now and pinned; later runs check those hashes
    like any other model's. The files stay where they are.

    A corrupt model list (not YAML, not UTF-8, an entry `models add` would not
    write) is never overwritten in place and nothing in it is lost: it is renamed
    to `user-models.yaml.corrupt-<UTC timestamp>` beside it, and a new list is
    written holding every entry of the old one that still reads as a valid entry
    (none when it is not YAML) plus this model; `report` gets one line saying so,
    naming the backup. A list that cannot be read at all (permissions, an I/O
    error) is left untouched and `UserModelsError` says why: its content is unknown.
    """
    spec, repaired = write_user_model(name, family, folder, use, report)
    if repaired:
        REGISTRY.reset()  # the list was repaired: read it afresh
    else:
        REGISTRY[name] = spec
    return spec
