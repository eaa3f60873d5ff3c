"""The store: verified local copies of the models, filled by `pull` and checked by `require`.

Models are fetched only by `assetline models pull` (or `pull()`), from an
ordered list of sources, and checked by hash before they are stored. A flow
never downloads: `require()` finds a verified local copy or raises a
`ModelError` that names the model and the fix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from assetline.errors import ModelError
from assetline.models.paths import cache_root
from assetline.models.registry import REGISTRY, check_user_models, get_spec
from assetline.models.sources import FolderSource, Source
from assetline.models.specs import BUILT_IN, ModelSpec
from assetline.settings import settings
from assetline.storage import sha256_file


# name -> (size, mtime) of each of its files when last hashed: `require` re-hashes only what changed.
_verified: dict[str, tuple] = {}
_verify_lock = threading.Lock()


def model_dir(name: str) -> Path:
    """Where a model's files are: the cache for built-in models, the user's folder for their own."""
    if name not in BUILT_IN and name in REGISTRY:
        return Path(next(s.folder for s in REGISTRY[name].sources if isinstance(s, FolderSource)))
    return cache_root() / name


def user_sources() -> list[Source]:
    """The folders `$ASSETLINE_MODEL_SOURCES` names (os.pathsep-separated), tried before a model's own sources."""
    raw = settings().model_sources
    return [FolderSource(Path(p).expanduser()) for p in raw.split(os.pathsep) if p]


def status(spec: ModelSpec) -> str:
    """`present`, `missing` or `corrupt`, re-hashing every file."""
    folder = model_dir(spec.name)
    files = [folder / f.name for f in spec.files]
    if not any(p.exists() for p in files):
        return "missing"
    for f, p in zip(spec.files, files):
        if not p.is_file() or p.stat().st_size != f.size or sha256_file(p) != f.sha256:
            return "corrupt"
    return "present"


def _check_files(spec: ModelSpec, folder: Path) -> str | None:
    """None when every file in `folder` matches its pin, else what is wrong."""
    for f in spec.files:
        p = folder / f.name
        if not p.is_file():
            return f"{f.name} missing"
        if sha256_file(p) != f.sha256:
            return f"{f.name} sha256 mismatch"
    return None


def pull(
    names: Iterable[str] | None = None,
    extra_sources: Iterable[Source] = (),
    report: Callable[[str, str], None] = lambda name, msg: None,
) -> dict[str, str]:
    """Fetch every missing or corrupt model, verify it, and store it in the cache.

    Idempotent: a model already present and intact is left alone. Returns
    model name -> what happened ("present", "fetched from ...").
    Raises `ModelError` for a model no source could deliver intact.
    """
    check_user_models()
    outcome: dict[str, str] = {}
    for name in names or list(REGISTRY):
        spec = get_spec(name)
        if status(spec) == "present":
            outcome[name] = "present"
            report(name, "present")
            continue
        errors = []
        for source in [*extra_sources, *user_sources(), *spec.sources]:
            report(name, f"fetching from {source.label}")
            root = cache_root()
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=root) as tmp:
                staged = Path(tmp)
                try:
                    source.fetch(spec, staged)
                except Exception as exc:  # any source may fail: note it and try the next
                    errors.append(f"{source.label}: {exc}")
                    continue
                problem = _check_files(spec, staged)
                if problem:
                    errors.append(f"{source.label}: {problem}")
                    continue
                final = model_dir(name)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(staged, final)
                staged.mkdir()  # TemporaryDirectory cleans up the (now empty) name
            outcome[name] = f"fetched from {source.label}"
            report(name, outcome[name])
            break
        else:
            raise ModelError(name, "could not be fetched: " + "; ".join(errors))
    _verified.clear()
    return outcome


def require(name: str) -> Path:
    """The folder of a verified local copy of model `name`; never downloads.

    Hashes are checked once per process (and again if a file changes on disk).
    A user model list that cannot be used stops every model, built-ins too:
    what the user meant to pin is unknown.
    """
    check_user_models()
    spec = get_spec(name)
    folder = model_dir(name)
    paths = [folder / f.name for f in spec.files]
    try:
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    except FileNotFoundError:
        if name not in BUILT_IN:
            raise ModelError(name, f"model files are missing from {folder}") from None
        raise ModelError(name, "model is not installed: run `assetline models pull`") from None
    with _verify_lock:
        if _verified.get(name) != stamp:
            problem = _check_files(spec, folder)
            if problem:
                fix = "run `assetline models pull`" if name in BUILT_IN else f"restore {folder}, or `assetline models add` it again"
                raise ModelError(name, f"model is corrupt ({problem}): {fix}")
            _verified[name] = stamp
    return folder
