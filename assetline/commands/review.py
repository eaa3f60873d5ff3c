"""`assetline review list | approve NAME | reject NAME`: decide on assets held for review, from a shell.

NAME is the input's file name, the asset folder's name, or the flow run's id or
name. The commands ask the Prefect API at `PREFECT_API_URL` (default: a local
`serve`, http://127.0.0.1:4200/api) for suspended runs and read the held assets
under `--out` (and under each suspended run's own output root). A run that is
suspended on a served deployment is resumed with the decision, exactly as the
UI's Resume form does; an asset `assetline run` held (no deployment) is
delivered or dropped here, in this process, the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from assetline.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OutOption, fail, out

app = typer.Typer(help="Assets held for review: list them, approve or reject one.", no_args_is_help=True)

DEFAULT_API = "http://127.0.0.1:4200/api"
API_TIMEOUT_S = 10.0
ByOption = Annotated[str, typer.Option("--by", help="The reviewer's name (recorded in every manifest).")]
WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until a resumed run has finished.")]


@dataclass
class Waiting:
    """One held asset: its files (when found here), and the suspended run holding it (when there is one)."""

    out_root: Path
    held: object  # review.held.HeldAsset
    run: object | None = None  # prefect FlowRun, suspended

    @property
    def names(self) -> set[str]:
        h = self.held
        found = {h.folder, Path(h.source).name, h.run.flow_run_id or "", h.run.flow_run_name or ""}
        if self.run is not None:
            found |= {str(self.run.id), self.run.name}
        return found - {""}


def _api() -> str:
    os.environ.setdefault("PREFECT_API_URL", DEFAULT_API)
    return os.environ["PREFECT_API_URL"]


def _suspended_runs() -> tuple[list, str | None]:
    """The process-asset runs suspended for review on the server, and why none could be read (None: fine)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True, httpx_settings={"timeout": API_TIMEOUT_S}) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["process-asset"])),
                flow_run_filter=FlowRunFilter(state=dict(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
    except Exception as exc:  # no server there: the held files still show
        if getattr(getattr(exc, "response", None), "status_code", None) == 401:
            return [], f"Prefect API at {_api()} refused the credentials (401: set PREFECT_API_AUTH_STRING): showing assets held under --out only"
        return [], f"Prefect API at {_api()} not reachable ({type(exc).__name__}): showing assets held under --out only"
    return [r for r in runs if r.state and r.state.name == "Suspended"], None


def _waiting(out_root: Path) -> tuple[list[Waiting], str | None]:
    from assetline.review.held import held_assets

    runs, problem = _suspended_runs()
    by_root: dict[Path, list] = {}
    for root in [out_root] + [Path(str(r.parameters.get("out"))) for r in runs if r.parameters.get("out")]:
        key = root.absolute()
        if key not in by_root:
            by_root[key] = held_assets(root)
    found: list[Waiting] = []
    for root, assets in by_root.items():
        for held in assets:
            run = next((r for r in runs if str(r.id) == held.run.flow_run_id), None)
            found.append(Waiting(root, held, run))
    return sorted(found, key=lambda w: w.held.held_at), problem


def _one(name: str, out_root: Path) -> Waiting:
    waiting, problem = _waiting(out_root)
    matches = [w for w in waiting if name in w.names]
    if not matches:
        hint = f"; {problem}" if problem else ""
        fail(f"{name}: no asset awaits review by that name (assetline review list){hint}", EXIT_FAILED)
    if len(matches) > 1:
        fail(f"{name}: {len(matches)} held assets fit: name one by its folder ({', '.join(w.held.folder for w in matches)})", EXIT_USAGE)
    return matches[0]


@app.command("list")
def list_(out_dir: OutOption = Path("out")) -> None:
    """Assets awaiting review: asset, run, reasons, waiting since."""
    _api()
    waiting, problem = _waiting(out_dir)
    table = Table(title="awaiting review")
    for col in ("asset", "folder", "run", "reasons", "since"):
        table.add_column(col, overflow="fold")
    for w in waiting:
        h = w.held
        run = f"{w.run.name} (suspended)" if w.run is not None else (h.run.flow_run_name or "") + (" (ended: finish here)" if not h.run.deployment else "")
        table.add_row(Path(h.source).name, str(w.out_root / ".review" / h.folder), run, "\n".join(r.detail for r in h.reasons), h.held_at)
    out.print(table)
    out.print(f"{len(waiting)} awaiting review")
    if problem:
        out.print(problem, highlight=False)


@app.command()
def approve(
    name: Annotated[str, typer.Argument(help="Input file name, asset folder name, or flow run id or name.")],
    by: ByOption,
    comment: Annotated[str, typer.Option("--comment", help="Why (optional).")] = "",
    out_dir: OutOption = Path("out"),
    wait: WaitOption = True,
) -> None:
    """Deliver a held asset: its outputs signed with your approval, moved into OUT/<asset>/."""
    _decide(name, "approve", by, comment, out_dir, wait)


@app.command()
def reject(
    name: Annotated[str, typer.Argument(help="Input file name, asset folder name, or flow run id or name.")],
    by: ByOption,
    comment: Annotated[str, typer.Option("--comment", help="Why (required): the run ends with it.")],
    out_dir: OutOption = Path("out"),
    wait: WaitOption = True,
) -> None:
    """Deliver nothing; the asset is not offered again for this input and recipe (unless `run --retry-rejected`)."""
    if not comment.strip():
        fail("reject needs --comment: say why", EXIT_USAGE)
    _decide(name, "reject", by, comment, out_dir, wait)


def _decide(name: str, decision: str, by: str, comment: str, out_dir: Path, wait: bool) -> None:
    from assetline.errors import AssetlineError
    from assetline.review.held import Decision, check_decision, decide

    try:
        check_decision(decision, by)
    except AssetlineError as exc:
        fail(exc, EXIT_USAGE)
    _api()
    w = _one(name, out_dir)
    held = w.held
    if w.run is not None:  # a served run waits on it: resume it with the same input the UI's form sends
        _resume(w, decision, by, comment, wait)
        return
    if held.run.deployment:
        fail(f"{held.folder}: held by a run of deployment {held.run.deployment!r}, not found suspended at {_api()} "
             "(start `assetline serve`, or set PREFECT_API_URL to its server)", EXIT_FAILED)  # fmt: skip
    try:
        record, delivered = decide(w.out_root, held.folder, Decision(decision, by, comment))
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    if record.decision == "approve":
        out.print(f"approved by {record.by} at {record.at}: delivered {len(delivered)} output(s) into {w.out_root / held.folder}", highlight=False)
        for path in delivered:
            out.print(f"  {path}", highlight=False)
    else:
        out.print(f"rejected by {record.by} at {record.at}: nothing delivered ({record.comment})", highlight=False)
    raise typer.Exit(EXIT_OK)


def _resume(w: Waiting, decision: str, by: str, comment: str, wait: bool) -> None:
    from prefect.flow_runs import resume_flow_run, wait_for_flow_run

    try:
        resume_flow_run(w.run.id, run_input={"decision": decision, "reviewer": by, "comment": comment})
    except Exception as exc:  # the server refused the input, or the run is no longer suspended
        fail(f"{w.run.name}: not resumed: {exc}", EXIT_FAILED)
    out.print(f"{w.run.name}: resumed with {decision} by {by}", highlight=False)
    if not wait:
        raise typer.Exit(EXIT_OK)
    from prefect.utilities.asyncutils import run_coro_as_sync

    run = run_coro_as_sync(wait_for_flow_run(w.run.id, timeout=None))  # Prefect's events, no polling
    state = run.state
    out.print(f"{w.run.name}: {state.name}" + (f" ({state.message})" if state and state.message else ""), highlight=False)
    if decision == "approve" and run.state_type.value == "COMPLETED":
        out.print(f"delivered into {w.out_root / w.held.folder}", highlight=False)
    raise typer.Exit(EXIT_OK if run.state_type.value == "COMPLETED" else EXIT_FAILED)
