"""`assetline ...`: run assets now, verify outputs, manage models, run the demo.

Exit codes: 0 all done, 1 some asset (or check) failed, 2 usage error.
"""

from __future__ import annotations

from assetline import prefect_env

prefect_env.configure()

import os  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from assetline import __version__, models  # noqa: E402
from assetline.errors import AssetlineError, RecipeError  # noqa: E402

app = typer.Typer(
    name="assetline",
    help="Event-driven asset pipeline: cutouts, upscales, transcripts, subtitles, with provenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, fetch (pinned, hash-checked) and verify models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="Signing keys for Content Credentials (C2PA): make a development CA, show what is used.",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(keys_app, name="keys")

out = Console(soft_wrap=True)  # one line per finding, however long: greppable
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _usage_error(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(EXIT_USAGE)


def _version(value: bool) -> None:
    if value:
        out.print(f"assetline {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """assetline: post-production assets in, verified outputs out."""


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output root.")] = Path("out"),
    recipe: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Recipe YAML (default: built-in, see configs/default.yaml).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override one recipe value: key.path=value.")] = None,
) -> None:
    """Process files and folders now; prints a table of outputs."""
    from assetline.config import load_recipe

    try:
        settings = load_recipe(recipe, set_ or [])
    except RecipeError as exc:
        raise _usage_error(exc.line()) from None
    _require_models(settings)
    results = _run_with_progress(paths, out_dir, settings)
    _print_results(results)
    raise typer.Exit(EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK)


def _require_models(settings) -> None:
    """Fail once, before any asset starts, when a model the recipe needs is missing or corrupt."""
    try:
        for name in settings.required_models():
            models.require(name)
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    _require_signing_key()  # every command that runs assets comes through here


def _require_signing_key() -> None:
    """Outputs are never unsigned: use the configured key, or make a development CA and key now and say so."""
    from assetline.keys import signing_key

    try:
        _, made = signing_key(create=True)
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if made:
        err.print(f"no signing key configured: made a development CA and signing key in {made} "
                  "(`assetline keys show` says how to trust it elsewhere)", highlight=False)  # fmt: skip


def _run_with_progress(paths: list[Path], out_dir: Path, settings) -> list:
    """Plan (no server needed), then run what needs work against a Prefect server this command owns.

    With no PREFECT_API_URL the server is a child of this process on a free
    loopback port, started only when some asset needs work and stopped with it;
    it dies with this process even on SIGKILL, as every ffmpeg it starts does
    (`assetline.lifetime`). SIGINT or SIGTERM: the runs in flight are marked
    Cancelled, one line says which assets they were, and the command exits
    within seconds; nothing of theirs was published, so the next run picks them up.
    """
    from assetline.flows.batch import Batch, plan_batch
    from assetline.server import prefect_server

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with _interruptible(), Progress(*columns, console=err, transient=True) as progress:
        bar = progress.add_task("assets", total=None)

        def on_result(result) -> None:
            progress.advance(bar)
            if result.status == "failed":
                progress.console.print(f"[red]failed[/red] {result.source}: {result.message}", highlight=False)

        stopped: list[Path] = []
        try:
            plan = plan_batch(paths, out_dir, settings)
            progress.update(bar, total=plan.total)
            for result in plan.finished:
                on_result(result)
            if not plan.todo:
                return plan.finished  # everything up to date: no server started at all
            batch = Batch(out_dir, settings)
            with prefect_server(port=0, ui=False):
                try:
                    return plan.finished + batch.run(plan.todo, on_result)
                except Interrupted as exc:
                    stopped = batch.in_flight()
                    batch.cancel(f"assetline run was interrupted ({exc.signame})")
                    raise
        except Interrupted as exc:
            progress.stop()
            names = ", ".join(p.name for p in stopped[:5]) + (f" and {len(stopped) - 5} more" if len(stopped) > 5 else "")
            err.print(f"cancelled ({exc.signame}): {len(stopped)} asset(s) in flight stopped"
                      + (f" ({names})" if stopped else "") + "; nothing of theirs was published: run again to pick them up",
                      highlight=False)  # fmt: skip
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + exc.signum)  # the asset threads are inside native code: don't wait for them


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop, quickly and tidily."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum, self.signame = signum, signal.Signals(signum).name
        super().__init__(self.signame)


@contextmanager
def _interruptible():
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; a second one exits at once."""
    import signal

    def first(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda n, f: os._exit(128 + n))
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_results(results: list) -> None:
    table = Table(title="assetline run", show_lines=False)
    for col in ("asset", "status", "outputs", "time"):
        table.add_column(col, overflow="fold")
    style = {"done": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        if r.status == "failed":
            where = r.message
        else:  # the outputs, then any note (e.g. a clip without sound: transcription skipped)
            where = "\n".join([str(Path(r.out_dir) / name) for name in r.outputs] + ([r.message] if r.message else []))
        table.add_row(Path(r.source).name, f"[{style[r.status]}]{r.status}[/]", where, f"{r.seconds:.1f}s")
    out.print(table)
    counts = {s: sum(r.status == s for r in results) for s in style}
    out.print(f"{counts['done']} done, {counts['skipped']} up to date, {counts['failed']} failed")


@app.command()
def slots() -> None:
    """Who holds this machine's heavy-step slots now (render_video, transcribe): asset, flow run, pid, since."""
    from assetline.slots import holders, host, slots_dir

    held = holders()
    for h in held:
        out.print(f"{h.step} #{h.slot} on {host()}: {h.describe()}", highlight=False)
    out.print(f"{len(held)} slot(s) held ({slots_dir()})", highlight=False)


@app.command()
def verify(
    paths: Annotated[list[Path], typer.Argument(help="Outputs, sidecars or output folders.")],
) -> None:
    """Check outputs against their provenance sidecars and Content Credentials; exit 0 only if all hold.

    For each output: its C2PA validation state, whether its signer is trusted
    (the anchors of `assetline keys show`), the chain of ingredients back to
    the original input, the AI disclosure, and that the JSON sidecar agrees
    with the signed manifest. One line per problem.
    """
    from assetline.provenance import verify_paths

    verdicts = verify_paths(paths)
    failed = [v for v in verdicts if not v.ok]
    for v in verdicts:
        if v.ok:
            c2pa = next((n for n in v.notes if n.startswith("C2PA ")), "")
            out.print(f"[green]ok[/green]     {v.output}" + (f"  ({c2pa})" if c2pa else ""), highlight=False)
        else:
            for problem in v.problems:
                out.print(f"[red]FAILED[/red] {v.output}: {problem}", highlight=False)
    if not verdicts:
        raise _usage_error("nothing to verify: no outputs found")
    out.print(f"{len(verdicts) - len(failed)} of {len(verdicts)} outputs verified")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@keys_app.command("init")
def keys_init(
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Where to put them (default: $ASSETLINE_KEYS or the user data folder).")] = None,
    alg: Annotated[str, typer.Option("--alg", help="es256 (EC P-256) or ed25519.")] = "es256",
    force: Annotated[bool, typer.Option("--force", help="Replace keys that are already there.")] = False,
) -> None:
    """Make a local CA and a signing certificate it issued (development and first use); keys get mode 0600."""
    from assetline.keys import init_keys, keys_dir, trust_instructions

    target = folder or keys_dir()
    try:
        made = init_keys(target, alg=alg.lower(), force=force)
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    name = {"es256": "ES256", "ed25519": "Ed25519"}[alg.lower()]
    out.print(f"made a development CA and an {name} signing certificate in {made} (private keys: mode 0600)", highlight=False)
    if folder is not None and folder.resolve() != keys_dir().resolve():
        out.print(f"use them: export ASSETLINE_KEYS={made.resolve()}", highlight=False)
    for line in trust_instructions(made):
        out.print(line, highlight=False)


@keys_app.command("show")
def keys_show() -> None:
    """Which certificate signs outputs, and which CAs `verify` trusts (public facts only, never a key)."""
    from assetline.keys import CA_CERT, configured_key, describe_certificate, keys_dir, trust_anchors, trust_instructions

    try:
        key = configured_key()
        anchors, where = trust_anchors()
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if key is None:
        out.print(f"signing key: none (in {keys_dir()}); `assetline run` makes a development one, or run `assetline keys init`", highlight=False)
    else:
        facts = describe_certificate(key.chain_pem)
        out.print(f"signing certificate: {key.origin}", highlight=False)
        out.print(f"  subject {facts['subject']}; issuer {facts['issuer']}; {key.alg}; valid until {facts['not_after']}", highlight=False)
        out.print(f"  sha256 fingerprint {facts['sha256_fingerprint']}", highlight=False)
        out.print(f"  timestamp authority: {key.tsa_url or 'none (ASSETLINE_TSA_URL unset)'}", highlight=False)
    count = anchors.count("-----BEGIN CERTIFICATE-----") if anchors else 0
    out.print(f"trust anchors for verify: {where}" + (f" ({count} certificate{'s' * (count != 1)})" if anchors else ""), highlight=False)
    if key is not None and (keys_dir() / CA_CERT).is_file():
        for line in trust_instructions(keys_dir()):
            out.print(line, highlight=False)


@models_app.command("list")
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


@models_app.command("pull")
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
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    fetched = sum(v != "present" for v in outcome.values())
    out.print(f"{len(outcome)} models ready in {models.cache_root()} ({fetched} fetched)")


@models_app.command("add")
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
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    out.print(f"added {spec.name} ({spec.family}, {len(spec.files)} files pinned) to {models.user_models_file()}")


@models_app.command("verify")
def models_verify() -> None:
    """Re-hash every model in the cache; exit 1 if any is missing or corrupt, or the user model list is unusable."""
    try:
        models.check_user_models()
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    bad = 0
    for spec in models.REGISTRY.values():
        state = models.status(spec)
        ok = state == "present"
        bad += not ok
        out.print(f"{'[green]ok[/green]    ' if ok else '[red]' + state + '[/red]'} {spec.name}", highlight=False)
    if bad:
        out.print("run `assetline models pull` to fetch them")
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output root.")] = Path("out"),
    inputs: Annotated[Path, typer.Option("--inputs", help="Where the demo inputs are written.")] = Path("demo-inputs"),
    port: Annotated[int, typer.Option("--port", help="Port for the local Prefect server.")] = 4200,
    keep_ui: Annotated[Optional[bool], typer.Option("--keep-ui/--no-keep-ui", help="Keep the Prefect UI up until Ctrl-C (default: when interactive).")] = None,
) -> None:
    """Make demo assets from photos shipped offline, run them, and show where everything is."""
    from assetline.config import load_recipe
    from assetline.demo import make_demo_inputs
    from assetline.server import prefect_server

    made = make_demo_inputs(inputs)
    out.print(f"demo inputs: {len(made)} files in {inputs}/")
    with prefect_server(port) as ui_url:
        if ui_url:
            out.print(f"Prefect UI: {ui_url}")
        settings = load_recipe(None)
        _require_models(settings)
        results = _run_with_progress([inputs], out_dir, settings)
        _print_results(results)
        out.print(f"outputs: {out_dir.resolve()}  (check them: assetline verify {out_dir})")
        if ui_url:
            out.print(f"Prefect UI: {ui_url}/runs")
            if keep_ui if keep_ui is not None else sys.stdin.isatty():
                out.print("the UI stays up until Ctrl-C")
                _wait_for_interrupt()
    raise typer.Exit(EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK)


@app.command()
def serve(
    inbox: Annotated[Path, typer.Option("--inbox", "-i", help="Folder to watch; created if missing.")] = Path("inbox"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output root.")] = Path("out"),
    recipe: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Recipe YAML (default: built-in, see configs/default.yaml).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override one recipe value: key.path=value.")] = None,
    port: Annotated[int, typer.Option("--port", help="Port for the local Prefect server (when PREFECT_API_URL is unset).")] = 4200,
    catch_up: Annotated[bool, typer.Option("--catch-up/--no-catch-up", help="Process what is already in the inbox at start.")] = True,
    host: Annotated[str, typer.Option("--host", help="Address the local Prefect server listens on (0.0.0.0 in a container).")] = "127.0.0.1",
) -> None:
    """Watch an inbox and process each file that lands in it; also a nightly batch. Runs until Ctrl-C."""
    from assetline.config import load_recipe
    from assetline.serve import BATCH_DEPLOYMENT, PROCESS_DEPLOYMENT, ServeSettings
    from assetline.serve import serve as serve_forever
    from assetline.server import prefect_server

    try:
        settings = load_recipe(recipe, set_ or [])
    except RecipeError as exc:
        raise _usage_error(exc.line()) from None
    if inbox.resolve() == out_dir.resolve():
        raise _usage_error("--inbox and --out must be different folders")
    _require_models(settings)
    _log_to_console()
    try:
        with prefect_server(port, host) as ui_url:
            def ready() -> None:
                out.print(f"Prefect UI: {ui_url}", highlight=False)
                out.print(f"watching {inbox.resolve()} -> {out_dir.resolve()}", highlight=False)
                out.print(f"deployments: {PROCESS_DEPLOYMENT} (on arrival), {BATCH_DEPLOYMENT} ({settings.inbox.batch_cron}, {settings.inbox.timezone})", highlight=False)
                out.print("stop with Ctrl-C", highlight=False)

            serve_forever(ServeSettings(inbox.resolve(), out_dir.resolve(), settings, catch_up), on_ready=ready)
    except AssetlineError as exc:
        err.print(f"[red]error:[/red] {exc.line()}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    out.print("stopped")


@app.command()
def watch(
    inbox: Annotated[Path, typer.Option("--inbox", "-i", help="Folder to watch.")] = Path("inbox"),
    recipe: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Recipe YAML (its inbox section applies).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override one recipe value: key.path=value.")] = None,
    exclude: Annotated[Optional[list[Path]], typer.Option("--exclude", help="A folder inside the inbox not to watch (e.g. the output root).")] = None,
) -> None:
    """Only announce arrivals (events) to the server at PREFECT_API_URL; workers elsewhere run them."""
    import time

    from assetline.config import load_recipe
    from assetline.inbox import InboxWatcher

    try:
        settings = load_recipe(recipe, set_ or [])
    except RecipeError as exc:
        raise _usage_error(exc.line()) from None
    if not os.environ.get("PREFECT_API_URL"):
        raise _usage_error("set PREFECT_API_URL to the server that runs the deployments (or use `assetline serve`)")
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage_error(f"{inbox}: cannot use as the inbox ({exc.strerror})") from None
    _log_to_console()
    watcher = InboxWatcher(inbox, settings.inbox, exclude=exclude or [])
    watcher.start()
    out.print(f"watching {inbox.resolve()}: announcing arrivals to {os.environ['PREFECT_API_URL']}", highlight=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        _flush_events()


def _log_to_console() -> None:
    """serve/watch: arrivals and refusals (INFO), and the runner's warnings (a crashed run), on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)  # one line per event, unwrapped: greppable
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    for name, level in (("assetline", logging.INFO), ("prefect.runner", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.setLevel(min(logger.level or level, level))
        logger.addHandler(handler)


def _flush_events() -> None:
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)
    except Exception:
        pass


def _wait_for_interrupt() -> None:
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app()
