"""`assetline demo`: make demo inputs from media shipped offline, run them, and show where everything is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from assetline.commands._common import EXIT_FAILED, EXIT_OK, OutOption, load_recipe_or_exit, out, require_models, wait_for_interrupt
from assetline.commands.run import print_results, run_with_progress
from assetline.demo import DEMO_FORBIDDEN


DEMO_SETTINGS = [f"audio.transcribe.forbidden={DEMO_FORBIDDEN!r}".replace("'", '"')]


def review_lines(results, out_dir: Path) -> list[str]:
    """The closing lines for assets held for review: where they wait and how to approve or reject them."""
    held = [r for r in results if r.status == "review"]
    if not held:
        return []
    lines = [f"{len(held)} asset(s) await review in {out_dir / '.review'}/ (nothing of theirs is delivered yet):"]
    for r in held:
        lines.append(f"  {Path(r.source).name}: {r.message.removeprefix('awaiting review: ')}")
    name = Path(held[0].source).name
    lines += [
        f"approve: assetline review approve {name} --by YOUR-NAME --out {out_dir}   (or reject: review reject ... --comment WHY)",
        "list:    assetline review list --out " + str(out_dir),
        "in the UI: under `assetline serve` a held run waits Suspended; open it in the Prefect UI and press Resume",
    ]
    return lines


def demo(
    out_dir: OutOption = Path("out"),
    inputs: Annotated[Path, typer.Option("--inputs", help="Where the demo inputs are written.")] = Path("demo-inputs"),
    port: Annotated[int, typer.Option("--port", help="Port for the local Prefect server.")] = 4200,
    keep_ui: Annotated[Optional[bool], typer.Option("--keep-ui/--no-keep-ui", help="Keep the Prefect UI up until Ctrl-C (default: when interactive).")] = None,
) -> None:
    """Make demo assets from photos shipped offline, run them, and show where everything is."""
    from assetline.demo import make_demo_inputs
    from assetline.server import prefect_server

    made = make_demo_inputs(inputs)
    out.print(f"demo inputs: {len(made)} files in {inputs}/")
    with prefect_server(port) as ui_url:
        if ui_url:
            out.print(f"Prefect UI: {ui_url}")
        # $ASSETLINE_RECIPE, or the defaults; plus a forbidden term the demo speech says, so one asset awaits review.
        settings = load_recipe_or_exit(None, DEMO_SETTINGS)
        require_models(settings)
        results = run_with_progress([inputs], out_dir, settings)
        print_results(results)
        out.print(f"outputs: {out_dir.resolve()}  (check them: assetline verify {out_dir})")
        for line in review_lines(results, out_dir):
            out.print(line, highlight=False)
        if ui_url:
            out.print(f"Prefect UI: {ui_url}/runs")
            if keep_ui if keep_ui is not None else sys.stdin.isatty():
                out.print("the UI stays up until Ctrl-C")
                wait_for_interrupt()
    raise typer.Exit(EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK)
