"""`assetline serve`: watch an inbox and serve the two deployments until Ctrl-C (the work is in `assetline.serve`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from assetline.commands._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutOption,
    RecipeOption,
    SetOption,
    fail,
    load_recipe_or_exit,
    log_to_console,
    out,
    require_models,
)
from assetline.errors import AssetlineError


def serve(
    inbox: Annotated[Path, typer.Option("--inbox", "-i", help="Folder to watch; created if missing.")] = Path("inbox"),
    out_dir: OutOption = Path("out"),
    recipe: RecipeOption = None,
    set_: SetOption = None,
    port: Annotated[int, typer.Option("--port", help="Port for the local Prefect server (when PREFECT_API_URL is unset).")] = 4200,
    catch_up: Annotated[bool, typer.Option("--catch-up/--no-catch-up", help="Process what is already in the inbox at start.")] = True,
    host: Annotated[str, typer.Option("--host", help="Address the local Prefect server listens on (0.0.0.0 in a container); "
                                      "beyond loopback it requires an API auth string, made if none is set.")] = "127.0.0.1",
) -> None:
    """Watch an inbox and process each file that lands in it; also a nightly batch. Runs until Ctrl-C."""
    from assetline.auth import ensure_server_auth, is_loopback
    from assetline.serve import BATCH_DEPLOYMENT, PROCESS_DEPLOYMENT, ServeSettings
    from assetline.serve import serve as serve_forever
    from assetline.server import prefect_server

    settings = load_recipe_or_exit(recipe, set_)
    if inbox.resolve() == out_dir.resolve():
        fail("--inbox and --out must be different folders", EXIT_USAGE)
    require_models(settings)
    log_to_console()
    try:
        if not os.environ.get("PREFECT_API_URL") and not is_loopback(host):
            auth = ensure_server_auth()
            how = "made a new one, stored in" if auth.made else "from"
            out.print(f"{host} is reachable beyond this machine: the API requires its auth string ({how} {auth.where})", highlight=False)
        with prefect_server(port, host) as ui_url:
            def ready() -> None:
                out.print(f"Prefect UI: {ui_url}", highlight=False)
                out.print(f"watching {inbox.resolve()} -> {out_dir.resolve()}", highlight=False)
                out.print(f"deployments: {PROCESS_DEPLOYMENT} (on arrival), {BATCH_DEPLOYMENT} ({settings.inbox.batch_cron}, {settings.inbox.timezone})", highlight=False)
                out.print("stop with Ctrl-C", highlight=False)

            serve_forever(ServeSettings(inbox.resolve(), out_dir.resolve(), settings, catch_up), on_ready=ready)
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    out.print("stopped")
