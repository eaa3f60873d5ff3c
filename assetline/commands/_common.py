"""What every command shares: the two consoles, the exit codes, the one error line, recipe loading, preflight.

An error reaches the user as exactly one red line on stderr (the `AssetlineError`
line: subject and cause) and an exit code: 1 when something failed, 2 when the
command was used wrongly (a bad recipe or `--set` among them).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer
from rich.console import Console

from assetline.errors import AssetlineError, RecipeError

if TYPE_CHECKING:
    from assetline.config import Recipe

out = Console(soft_wrap=True)  # one line per finding, however long: greppable
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# The options several commands take, declared once so their flags and help read the same everywhere.
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output root.")]
RecipeOption = Annotated[Optional[Path], typer.Option("--recipe", "-r",
                                                      help="Recipe YAML (default: built-in, see configs/default.yaml).")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override one recipe value: key.path=value.")]


def fail(problem: AssetlineError | str, code: int) -> NoReturn:
    """Print the one error line (an error's subject and cause, or the message) and exit with `code`."""
    line = problem.line() if isinstance(problem, AssetlineError) else problem
    err.print(f"[red]error:[/red] {line}", highlight=False)
    raise typer.Exit(code)


def load_recipe_or_exit(recipe: Path | None, sets: list[str] | None) -> Recipe:
    """The recipe file (or `$ASSETLINE_RECIPE`, or the defaults) with the `--set` overrides; a bad one is exit 2."""
    from assetline.recipes import load_recipe

    try:
        return load_recipe(recipe, sets or [])
    except RecipeError as exc:
        fail(exc, EXIT_USAGE)


def require_models(recipe: Recipe) -> None:
    """Fail once, before any asset starts, when a model the recipe needs is missing or corrupt."""
    from assetline import models

    try:
        for name in recipe.required_models():
            models.require(name)
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    _require_signing_key()  # every command that runs assets comes through here


def _require_signing_key() -> None:
    """Outputs are never unsigned: use the configured key, or make a development CA and key now and say so."""
    from assetline.keys import signing_key

    try:
        _, made = signing_key(create=True)
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    if made:
        err.print(f"no signing key configured: made a development CA and signing key in {made} "
                  "(`assetline keys show` says how to trust it elsewhere)", highlight=False)  # fmt: skip


def log_to_console() -> None:
    """serve/watch: arrivals and refusals (INFO), and the runner's warnings (a crashed run), on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)  # one line per event, unwrapped: greppable
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    for name, level in (("assetline", logging.INFO), ("prefect.runner", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.setLevel(min(logger.level or level, level))
        logger.addHandler(handler)


def wait_for_interrupt() -> None:
    """Sleep until Ctrl-C (demo's UI, watch's watcher)."""
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
