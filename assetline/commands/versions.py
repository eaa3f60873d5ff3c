"""`assetline versions NAME`: an asset's versions, oldest first: version, when, recipe, review, outputs.

NAME is an asset folder (a path, or its name under `--out`) or an input's file name;
a file name whose content changed has one asset folder per content, each listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from assetline.commands._common import EXIT_FAILED, EXIT_OK, OutOption, fail, out


def _asset_dirs(name: str, out_root: Path) -> list[Path]:
    from assetline.versions import history

    given = Path(name)
    for candidate in (given, out_root / name):
        if candidate.is_dir() and history(candidate):
            return [candidate]
    try:
        folders = sorted(p for p in out_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    found = []
    for folder in folders:
        sources = {Path(ref.path).name for v in history(folder) for m in v.manifests.values()
                   for ref in m.inputs if ref.role == "source"}  # fmt: skip
        if given.name in sources:
            found.append(folder)
    return found


def versions(
    name: Annotated[str, typer.Argument(help="Asset folder (path or name under --out), or the input's file name.")],
    out_dir: OutOption = Path("out"),
) -> None:
    """List an asset's versions: the current one in OUT/<asset>/, earlier ones kept in .versions/vNNN/."""
    from assetline.review.held import read_rejection
    from assetline.versions import history

    folders = _asset_dirs(name, out_dir)
    if not folders:
        fail(f"{name}: no delivered asset by that name under {out_dir}", EXIT_FAILED)
    for folder in folders:
        table = Table(title=str(folder))
        for col in ("version", "when", "recipe", "review", "outputs", "where"):
            table.add_column(col, overflow="fold", no_wrap=col in ("version", "recipe"))
        for v in history(folder):
            r = v.review
            review = f"{r.decision} by {r.by} at {r.at}" + (f": {r.comment}" if r.comment else "") if r else "-"
            where = "current" if v.current else str(v.folder.relative_to(folder))
            table.add_row(f"v{v.number}", _when(v.created_at), v.recipe_sha256[:12], review, ", ".join(v.manifests), where)
        rejected = read_rejection(folder.parent, folder.name)  # the last rejection, if any
        if rejected is not None:
            r = rejected.review
            table.add_row("-", _when(r.at), rejected.recipe_sha256[:12], f"reject by {r.by} at {r.at}: {r.comment}", "nothing delivered", "")
        out.print(table)
    raise typer.Exit(EXIT_OK)


def _when(at: str) -> str:
    """2026-12-02T07:32:53.791Z -> 2026-12-02 07:32:53Z"""
    return at[:19].replace("T", " ") + "Z" if len(at) >= 19 else at
