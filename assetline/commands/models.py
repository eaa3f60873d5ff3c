"""`assetline models list|pull|add|verify`: the model registry, fetched pinned and hash-checked (`assetline.models`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from assetline import models
from assetline.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err, fail, out
from assetline.errors import AssetlineError

app = typer.Typer(help="List, fetch (pinned, hash-checked) and verify models.", no_args_is_help=True)


@app.command("list")
def models_list() -> None:
    """Every registered model: use, size, and whether the cache holds it intact.

    A user model list that cannot be used is one warning line (the file and
    why); the built-in models are still listed.
    """
    problem = models.user_models_problem()
    if problem is not None:
        err.print(f"[yellow]warning:[/yellow] {problem.line()}; its models are not listed "
                  "(`assetline models add` sets a corrupt list aside and writes a new one)", highlight=False)  # fmt: skip
    table = Table(title=f"models in {models.cache_root()}")
    for col in ("name", "use", "size", "state"):
        table.add_column(col)
    colour = {"present": "green", "missing": "yellow", "corrupt": "red"}
    for spec in models.REGISTRY.values():
        state = models.status(spec)
        table.add_row(spec.name, spec.use, f"{spec.size / 1e6:.1f} MB", f"[{colour[state]}]{state}[/]")
    out.print(table)


@app.command("pull")
def models_pull(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to fetch (default: all).")] = None,
    from_dir: Annotated[Optional[list[Path]], typer.Option("--from", help="A folder holding model files, tried first.")] = None,
) -> None:
    """Fetch missing or corrupt models from their pinned sources and check every hash."""
    try:
        for name in names or []:
            models.get_spec(name)
        outcome = models.pull(
            names or None,
            extra_sources=[models.FolderSource(d) for d in from_dir or []],
            report=lambda name, msg: err.print(f"{name}: {msg}", highlight=False),
        )
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    fetched = sum(v != "present" for v in outcome.values())
    out.print(f"{len(outcome)} models ready in {models.cache_root()} ({fetched} fetched)")


@app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="The name recipes will use, e.g. whisper-large-v3.")],
    path: Annotated[Path, typer.Option("--path", help="The folder holding the model's files.")],
    family: Annotated[str, typer.Option("--family", help="whisper (CTranslate2), rembg (.onnx) or realesrgan (ncnn).")],
    use: Annotated[str, typer.Option("--use", help="What it is for, shown by `models list`.")] = "",
) -> None:
    """Register a model folder of your own under a name; its files are hashed now and checked on every run.

    A corrupt model list is set aside as `user-models.yaml.corrupt-<timestamp>`
    (nothing is lost) and a new one written with its readable entries and this
    model, said in one line; an unreadable one is left alone (exit 1).
    """
    try:
        spec = models.add_user_model(name, family, path, use,
                                     report=lambda line: err.print(f"[yellow]warning:[/yellow] {line}", highlight=False))  # fmt: skip
    except models.UserModelsError as exc:
        fail(exc, EXIT_FAILED)  # the list itself cannot be used: not the user's arguments
    except AssetlineError as exc:
        fail(exc, EXIT_USAGE)
    out.print(f"added {spec.name} ({spec.family}, {len(spec.files)} files pinned) to {models.user_models_file()}")


@app.command("verify")
def models_verify() -> None:
    """Re-hash every model in the cache; exit 1 if any is missing or corrupt, or the user model list is unusable."""
    try:
        models.check_user_models()
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    bad = 0
    for spec in models.REGISTRY.values():
        state = models.status(spec)
        ok = state == "present"
        bad += not ok
        out.print(f"{'[green]ok[/green]    ' if ok else '[red]' + state + '[/red]'} {spec.name}", highlight=False)
    if bad:
        out.print("run `assetline models pull` to fetch them")
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)
