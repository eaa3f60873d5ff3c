"""A held asset waits for a person: the run carries what to look at, suspends, and on resume does what they decided.

Served (a `process-asset` deployment run), the run suspends with the
`ReviewDecision` form (the Prefect UI's Resume; `assetline review` sends the
same input) and its process exits: a hundred assets waiting hold no process.
Resumed, the run starts again from the top, finds the asset still held in
`OUT/.review/<asset>/` (nothing is made twice), receives the decision and
delivers, or records the rejection. Under `assetline run` (no deployment to
resume) the run ends with the asset "awaiting review" and `assetline review
approve` finishes it in its own process, the same way (review/held.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field
from prefect.input import RunInput

from assetline.assets import Asset
from assetline.flows._asset import AssetResult
from assetline.review.held import Decision, HeldAsset, decide, held_dir, read_held

log = logging.getLogger(__name__)


class ReviewDecision(RunInput):
    """The Resume form: the server checks it against this schema, so an unknown decision or an
    empty name is refused there and the run stays suspended."""

    decision: Literal["approve", "reject"] = Field(description="approve: deliver the outputs; reject: deliver nothing")
    reviewer: str = Field(min_length=1, max_length=200, pattern=r"\S", description="Your name, as the manifests record it")
    comment: str = Field("", max_length=2000, description="Why (required by `assetline review reject`)")


def review_key(held: HeldAsset) -> str:
    """The suspension's key: one per held content and recipe, so a resumed run finds its own decision."""
    return f"review-{held.sha256[:12]}-{held.recipe_sha256[:8]}"


def await_review(result: AssetResult, asset: Asset, out_root: Path):
    """Report the held asset on the run; suspend when served; act on the decision once resumed.

    Returns the run's result: still "review" under `assetline run`, the
    delivered asset on approval, a Completed state named Rejected (with the
    reviewer's words) on rejection.
    """
    from prefect.flow_runs import suspend_flow_run
    from prefect.runtime import deployment
    from prefect.states import Completed

    held = read_held(out_root, asset.folder_name)
    if held is None:
        return result
    markdown = review_markdown(held, out_root)
    _artifact(held, markdown)
    if not deployment.get_id():
        return result  # nothing could resume this run: `assetline review approve` finishes it from the files
    form = ReviewDecision.with_initial_data(description=markdown)
    try:
        answer = suspend_flow_run(wait_for_input=form, key=review_key(held))  # exits the process until resumed
    except RuntimeError as exc:  # the server refused (a subflow can't be suspended): held on disk all the same
        log.warning("%s held for review, run not suspended (%s): `assetline review approve %s` finishes it",
                    held.source, exc, held.folder)  # fmt: skip
        return result
    record, delivered = decide(out_root, held.folder, Decision(answer.decision, answer.reviewer, answer.comment))
    said = f": {record.comment}" if record.comment else ""
    if record.decision == "reject":
        return Completed(name="Rejected", message=f"rejected by {record.by}{said}")
    done = AssetResult.done(asset, out_root / held.folder, delivered, f"approved by {record.by} at {record.at}{said}")
    return done


def _artifact(held: HeldAsset, markdown: str) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown, key=f"review-{held.sha256[:12]}", description=f"{Path(held.source).name}: awaiting review")
    except Exception as exc:  # reporting never fails the asset
        log.warning("review artifact for %s not created: %s", held.source, exc)


def review_markdown(held: HeldAsset, out_root: Path) -> str:
    """What the reviewer reads: why it was held, what was made, before/after, the subtitles with flagged cues marked."""
    from assetline.flows._report import _cell, _thumbnail

    folder = held_dir(out_root, held.folder)
    name = Path(held.source).name
    lines = [f"### {_cell(name)}: awaiting review", "", "**Why it was held:**", ""]
    lines += [f"- `{r.flag}`: {_cell(r.detail)}" for r in held.reasons]
    lines += ["", f"**Made** (preview in `{_cell(str(folder))}`; nothing is delivered before approval):", ""]
    for item in held.outputs:
        path = folder / item.name
        size = path.stat().st_size if path.is_file() else 0
        lines.append(f"- `{_cell(item.name)}` ({size:,} bytes; steps: {', '.join(s.name for s in item.steps)})")
    picture = next((o.name for o in held.outputs if o.name in ("upscaled.png", "cutout.png", "video.mp4")), None)
    if picture:
        before, after = _thumbnail(Path(held.source)), _thumbnail(folder / picture)
        if before and after:
            lines += ["", "| before | after |", "| --- | --- |", f"| ![source]({before}) | ![{picture}]({after}) |"]
    flagged = {n for r in held.reasons for n in r.cues if r.output in (None, "subtitles.srt")}
    cues = _cues(folder / "subtitles.srt")
    if cues:
        lines += ["", "**Subtitles** (flagged cues marked ⚠):", ""]
        for number, (start, text) in enumerate(cues, start=1):
            mark = "⚠ **" if number in flagged else ""
            lines.append(f"{number}. {mark}`{start}` {_cell(text)}{'**' if mark else ''}")
    lines += ["", "**Decide** with Resume above (decision, your name, comment), or from a shell:", "",
              f"    assetline review approve {held.folder} --by NAME [--comment TEXT]",
              f"    assetline review reject {held.folder} --by NAME --comment TEXT"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _cues(srt: Path) -> list[tuple[str, str]]:
    import pysubs2

    if not srt.is_file():
        return []
    try:
        subs = pysubs2.load(str(srt), encoding="utf-8", format_="srt")
    except Exception:
        return []
    return [(pysubs2.time.ms_to_str(e.start, fractions=True), " ".join(e.plaintext.split())) for e in subs]
