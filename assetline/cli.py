"""`assetline ...`: run assets now, verify outputs, manage models, run the demo.

The entry point only: each command lives in `assetline.commands`, one module
per command or group. Exit codes: 0 all done, 1 some asset (or check) failed,
2 usage error.
"""

from __future__ import annotations

from assetline import prefect_env

prefect_env.configure()  # before anything below imports Prefect

from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from assetline import __version__  # noqa: E402
from assetline.commands import demo, keys, models, review, run, serve, slots, verify, versions, watch  # noqa: E402
from assetline.commands._common import out  # noqa: E402

app = typer.Typer(
    name="assetline",
    help="Event-driven asset pipeline: cutouts, upscales, transcripts, subtitles, with provenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"assetline {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """assetline: post-production assets in, verified outputs out."""


# The order here is the order `assetline --help` lists them in.
app.command()(run.run)
app.command()(slots.slots)
app.command()(verify.verify)
app.command()(versions.versions)
app.command()(demo.demo)
app.command()(serve.serve)
app.command()(watch.watch)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(review.app, name="review")


def entry() -> None:
    """The console script: `app`, with any AssetlineError a command did not catch as one line and exit 1."""
    from assetline.commands._common import EXIT_FAILED, err
    from assetline.errors import AssetlineError

    try:
        app()
    except AssetlineError as exc:  # e.g. a bad ASSETLINE_* value, met wherever it is first read
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise SystemExit(EXIT_FAILED) from None


if __name__ == "__main__":
    entry()
