"""Reading a recipe: a file (or `$ASSETLINE_RECIPE`), its YAML made safe, `--set` overrides, one-line errors.

The schema and its defaults are `assetline.config`; here only how a recipe gets from
disk or the command line to a validated `Recipe`.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from assetline.config import Recipe
from assetline.errors import RecipeError
from assetline.settings import settings

MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few hundred bytes; anything past 1 MiB is not one


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise RecipeError("--set", f"{dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """`key.path=value`, the value read as YAML (so `true`, `4`, `"#fff"` keep their types)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise RecipeError("--set", f"expected key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except (yaml.YAMLError, RecursionError):
        value = raw
    if value is None and raw.strip() not in ("null", "~", "Null", "NULL"):
        value = raw  # e.g. "#ffffff", which YAML reads as a comment
    return key, value


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _read_recipe_file(source: Path) -> str:
    """The text of a recipe file: a regular file, at most `MAX_RECIPE_BYTES`, UTF-8."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except OSError as exc:
        raise RecipeError(source, f"cannot read recipe: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecipeError(source, "a recipe must be a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(source, f"cannot read recipe: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(source, f"recipe is larger than {MAX_RECIPE_BYTES // 1024} KiB: not a recipe")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(source, "recipe is not UTF-8 text") from None


def parse_recipe_text(text: str, source: str | Path = "recipe") -> Any:
    """YAML to plain data, refusing what no recipe needs: anchors and aliases (a 'billion laughs'), deep nesting.

    Errors are one line.
    """
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.AliasToken, yaml.AnchorToken, yaml.TagToken)):
                raise RecipeError(source, "YAML anchors, aliases and tags are not allowed in a recipe")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RecipeError(source, f"not valid YAML: {problem or ' '.join(str(exc).split())}{where}") from None
    except RecursionError:
        raise RecipeError(source, "not a recipe: nested too deeply") from None


def load_recipe(path: Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or `$ASSETLINE_RECIPE`, or the defaults) and apply `--set` overrides."""
    source: Path | None = path or settings().recipe
    data: dict = {}
    if source is not None:
        loaded = parse_recipe_text(_read_recipe_file(source), source)
        if loaded is not None and not isinstance(loaded, dict):
            raise RecipeError(source, "a recipe must be a mapping of sections")
        data = loaded or {}
    for item in sets:
        key, value = parse_set(item)
        _set_dotted(data, key, value)
    return recipe_from_dict(data, subject=source or "recipe")


def recipe_from_dict(data: dict, subject: str | Path = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(subject, _format_validation(exc)) from None
