"""The user's own models (`assetline models add`): a YAML list of folders, each file pinned by sha256.

Read only when the registry is first used, never at import. A list that cannot
be used is one `UserModelsError` line naming the file and the cause; `models add`
repairs a corrupt one without losing what it held.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from assetline.errors import ModelError
from assetline.models.paths import user_models_file
from assetline.models.sources import FolderSource
from assetline.models.specs import BUILT_IN, FAMILIES, FAMILY_FILES, ModelFile, ModelSpec
from assetline.storage import sha256_file, write_atomically


class UserModelsError(ModelError):
    """The user's model list cannot be used: one line naming the file and the cause.

    `unreadable` is True when the file could not be read at all (permissions, an
    I/O error): its content is unknown, so `models add` leaves it alone. Otherwise
    its content is corrupt (not YAML, not UTF-8, not what `models add` writes).
    """

    unreadable = False


def _unreadable(path: Path, cause: str) -> UserModelsError:
    error = UserModelsError(path, cause)
    error.unreadable = True
    return error


_SHA256_HEX = frozenset("0123456789abcdef")


def _read_user_file(path: Path) -> dict:
    """The mapping the user's model list holds ({} when there is no file); raises `UserModelsError`."""
    import yaml

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise _unreadable(path, "is a folder, not a file") from None
    except OSError as exc:
        raise _unreadable(path, f"cannot be read ({(exc.strerror or type(exc).__name__).lower()})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserModelsError(path, f"not UTF-8 text (byte {exc.start}): not a model list `models add` wrote") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        why = f": {exc.problem}" if exc.problem else ""
        raise UserModelsError(path, f"not valid YAML ({where}{why})") from None
    except yaml.YAMLError as exc:
        detail = f" ({exc.reason} at byte {exc.position})" if isinstance(exc, yaml.reader.ReaderError) else ""
        raise UserModelsError(path, f"not valid YAML{detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserModelsError(path, f"not a model list (a YAML mapping of names to entries): it holds a {type(data).__name__}")
    return data


def _entry_problem(name: object, entry: object) -> str | None:
    """What is wrong with one entry of the user's model list, or None when it is what `models add` writes."""
    if not isinstance(name, str) or not name:
        return f"entry {name!r}: a model name must be text"
    if name in BUILT_IN:
        return f"entry {name!r} uses a built-in model's name"
    if not isinstance(entry, dict):
        return f"entry {name!r} is not a mapping"
    family = entry.get("family")
    if family not in FAMILIES:
        return f"entry {name!r} has no known family (whisper, rembg, realesrgan): {family!r}"
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        return f"entry {name!r} has no 'path'"
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        return f"entry {name!r} has no 'files'"
    for file, digest in files.items():
        if not isinstance(file, str) or not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            return f"entry {name!r}: file {file!r} has no sha256 pin"
    sizes = entry.get("sizes", {})
    if not isinstance(sizes, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        return f"entry {name!r}: 'sizes' must map file names to byte counts"
    if not isinstance(entry.get("use", ""), (str, type(None))) or not isinstance(entry.get("license", ""), str):
        return f"entry {name!r}: 'use' and 'license' must be text"
    return None


def _user_spec(name: str, entry: dict) -> ModelSpec:
    folder = Path(entry["path"])
    files = tuple(ModelFile(n, h, int(entry.get("sizes", {}).get(n, 0))) for n, h in entry["files"].items())
    return ModelSpec(
        name=name,
        use=entry.get("use") or f"user model ({entry['family']}) in {folder}",
        family=entry["family"],
        files=files,
        sources=(FolderSource(folder),),
        license=entry.get("license", ""),
    )


def load_user_models() -> dict[str, ModelSpec]:
    """Models a user added with `assetline models add`, pinned by the hashes taken then.

    Reads the file now (the registry does so on first use, never at import).
    Raises `UserModelsError`, one line naming the file and the cause, when it is
    unreadable, not valid YAML, or holds an entry `models add` would not write.
    """
    path = user_models_file()
    data = _read_user_file(path)
    for name, entry in data.items():
        problem = _entry_problem(name, entry)
        if problem:
            raise UserModelsError(path, problem)
    return {name: _user_spec(name, entry) for name, entry in data.items()}


def write_user_model(name: str, family: str, folder: Path, use: str = "",
                     report: Callable[[str], None] = lambda line: None) -> tuple[ModelSpec, bool]:  # fmt: skip
    """Pin every file of `folder` under `name` in the user's model list: the spec, and whether the list was repaired.

    The list half of `add_user_model` (registry.py, which also updates the
    registry, and whose docstring says how a corrupt list is set aside and repaired).
    """
    import yaml

    folder = folder.expanduser().resolve()
    if name in BUILT_IN:
        raise ModelError(name, "is a built-in model name: choose another")
    if family not in FAMILIES:
        raise ModelError(name, f"unknown family {family!r} (whisper, rembg, realesrgan)")
    if not folder.is_dir():
        raise ModelError(folder, "no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for needed in FAMILY_FILES.get(family, ()):
        if not any(p.name == needed or (needed.startswith(".") and p.name.endswith(needed)) for p in files):
            raise ModelError(folder, f"a {family} model needs {needed!r}, which this folder lacks")
    entry = {
        "family": family,
        "path": str(folder),
        "use": use or f"user model ({family}) in {folder}",
        "files": {p.name: sha256_file(p) for p in files},
        "sizes": {p.name: p.stat().st_size for p in files},
    }
    path = user_models_file()
    try:
        current = _read_user_file(path)
        problem = next((p for n, e in current.items() if (p := _entry_problem(n, e))), None)
    except UserModelsError as exc:
        if exc.unreadable:
            raise UserModelsError(path, f"{exc.cause}: left as it is; fix it, then add {name} again") from None
        current, problem = {}, exc.cause
    if problem:
        kept = {n: e for n, e in current.items() if _entry_problem(n, e) is None}
        backup = _set_aside(path)
        current = kept
        others = f" and {len(kept)} readable entr{'y' if len(kept) == 1 else 'ies'} of the old one" if kept else ""
        report(f"{path} was corrupt ({problem}): kept it as {backup.name}; the new list holds {name}{others}")
    current[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, yaml.safe_dump(current, sort_keys=True).encode())
    return _user_spec(name, entry), bool(problem)


def _set_aside(path: Path) -> Path:
    """Rename a corrupt model list to `NAME.corrupt-<UTC timestamp>` beside it (never over another file)."""
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        backup = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        try:
            os.link(path, backup)  # fails if the name is taken: nothing is ever overwritten
        except FileExistsError:
            continue
        except OSError as exc:
            raise ModelError(path, f"is corrupt and cannot be set aside ({exc.strerror}): left as it is") from None
        os.unlink(path)
        return backup
    raise ModelError(path, "is corrupt and cannot be set aside: too many backups already")
