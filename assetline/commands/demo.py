"""`assetline demo`: make demo inputs from media shipped offline, run them, and show where everything is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from assetline.commands._common import EXIT_FAILED, EXIT_OK, OutOption, load_recipe_or_exit, out, require_models, wait_for_interrupt
from assetline.commands.run import print_results, run_with_progress


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
        settings = load_recipe_or_exit(None, [])  # $ASSETLINE_RECIPE, or the defaults
        require_models(settings)
        results = run_with_progress([inputs], out_dir, settings)
        print_results(results)
        out.print(f"outputs: {out_dir.resolve()}  (check them: assetline verify {out_dir})")
        if ui_url:
            out.print(f"Prefect UI: {ui_url}/runs")
            if keep_ui if keep_ui is not None else sys.stdin.isatty():
                out.print("the UI stays up until Ctrl-C")
                wait_for_interrupt()
    raise typer.Exit(EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK)
