"""What ops see in the Prefect UI: artifacts on each asset's flow run and on each batch.

Per asset (keys `asset-<sha12>` and `asset-<sha12>-outputs`, so the Artifacts
page keeps each asset's history):
- a table of the outputs: file, bytes, sha256, and each step with its time;
- a markdown summary: kind, source, result, the AI disclosure, before/after
  thumbnails (stills and footage), a transcript excerpt (audio and footage),
  or for a failure the one-line reason.
Per batch (key `batch-inbox`): a table of assets with state and timings.

Thumbnails are embedded as small data: URLs (the Prefect UI renders them in
markdown artifacts), so they work the same for `run`, `serve` and workers on
other machines, with no extra HTTP server and nothing to expire. They are kept
small because the database stores each summary twice (the artifact and its
key's latest copy): 160 px at JPEG quality 60 is about 4 KB a picture, where
240 px at 80 was about 11 KB (measured on scikit-image's photos).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

from assetline.errors import AssetlineError

log = logging.getLogger(__name__)

THUMB_PX = 160
THUMB_QUALITY = 60
EXCERPT_CHARS = 400


def failure_message(exc: BaseException, path: Path | None = None) -> str:
    """One line for a failed asset (the table prefixes the asset's path).

    The project's own errors say it all, naming their subject when it is not
    the asset itself (a model, an output folder); others get their type.
    """
    if isinstance(exc, AssetlineError):
        same = path is not None and exc.subject is not None and Path(exc.subject).absolute() == Path(path).absolute()
        return exc.cause if same or exc.subject is None else exc.line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def _in_flow_run() -> bool:
    try:
        from prefect.context import FlowRunContext

        return FlowRunContext.get() is not None
    except Exception:
        return False


def label_flow_run(extra_tags: list[str], name: str | None = None) -> None:
    """Add tags (and set the name) of the current flow run: kind, recipe and hash are known only once the file is."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None:
            return
        current = list(ctx.flow_run.tags or [])
        wanted = current + [t for t in extra_tags if t not in current]
        rename = name if name and name != ctx.flow_run.name else None
        if wanted != current or rename:
            with get_client(sync_client=True) as client:
                client.update_flow_run(ctx.flow_run.id, tags=wanted, name=rename)
            ctx.flow_run.tags = wanted
            if rename:
                ctx.flow_run.name = rename
    except Exception as exc:  # labels are for finding runs: never fail the asset over them
        log.debug("flow run not labelled: %s", exc)


def _key(sha256: str | None, suffix: str = "") -> str | None:
    return f"asset-{sha256[:12]}{suffix}" if sha256 else None


def _cell(text: str) -> str:
    """Markdown-safe table cell / inline text: no pipes, no markup from file names."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _manifests(out_dir: Path, names: list[str]) -> dict[str, dict]:
    found = {}
    for name in names:
        try:
            found[name] = json.loads((out_dir / f"{name}.provenance.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return found


def _thumbnail(path: Path) -> str | None:
    """A small JPEG data: URL of a still or of a clip's first frame (alpha shown over a checkerboard)."""
    from PIL import Image

    try:
        if path.suffix.lower() == ".mp4" or _is_video(path):
            import av

            with av.open(str(path)) as container:
                frame = next(container.decode(video=0))
                img = frame.to_image()
        else:
            with Image.open(path) as opened:
                opened.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
                img = opened.copy()
        img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            board = Image.new("RGB", rgba.size, (204, 204, 204))
            tile = 8
            for y in range(0, rgba.height, tile):
                for x in range((y // tile) % 2 * tile, rgba.width, 2 * tile):
                    board.paste((255, 255, 255), (x, y, x + tile, y + tile))
            board.paste(rgba, mask=rgba.getchannel("A"))
            img = board
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception as exc:  # a thumbnail is a courtesy
        log.debug("no thumbnail for %s: %s", path, exc)
        return None


def _is_video(path: Path) -> bool:
    from assetline.media import probe_kind

    try:
        return probe_kind(path) == "video"
    except Exception:
        return False


def _excerpt(out_dir: Path) -> str | None:
    try:
        transcript = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    text = " ".join(s.get("text", "").strip() for s in transcript.get("segments", [])).strip()
    if not text:
        return "(no speech found)"
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"


def asset_summary(result, source: Path) -> tuple[list[dict], str]:
    """The outputs table rows and the markdown summary for one finished (or up-to-date) asset."""
    out_dir = Path(result.out_dir)
    manifests = _manifests(out_dir, result.outputs)
    rows = []
    for name in result.outputs:
        m = manifests.get(name, {})
        out = m.get("output", {})
        steps = ", ".join(f"{s['name']} {_seconds(s['started_at'], s['ended_at']):.1f}s" for s in m.get("steps", []))
        rows.append({"file": name, "bytes": out.get("bytes", ""), "steps": steps, "sha256": out.get("sha256", "")})
    lines = [
        f"### {_cell(source.name)}: {result.status}",
        "",
        f"- kind: {result.kind}",
        f"- source: `{_cell(str(source))}` (sha256 `{result.sha256}`)",
        f"- outputs: `{_cell(str(out_dir))}`",
    ]
    if result.groups:  # delivered a group at a time: the words before the picture
        lines.append(f"- delivered: {_cell(result.group_times())}")
    if result.message:
        lines.append(f"- note: {_cell(result.message)}")
    disclosure = next((m.get("ai_disclosure") for m in manifests.values() if m.get("ai_disclosure")), None)
    if disclosure:
        lines.append(f"- AI disclosure: {_cell(disclosure.get('statement', ''))}")
    picture = next((n for n in ("upscaled.png", "cutout.png", "video.mp4") if n in result.outputs), None)
    if picture:
        before, after = _thumbnail(source), _thumbnail(out_dir / picture)
        if before and after:
            lines += ["", "| before | after |", "| --- | --- |", f"| ![source]({before}) | ![{picture}]({after}) |"]
    lines += _language_lines(manifests)
    excerpt = _excerpt(out_dir) if "transcript.json" in result.outputs else None
    if excerpt:
        lines += ["", "**Transcript** (excerpt):", "", "> " + _cell(excerpt)]
    lines += _forbidden_lines(manifests)
    return rows, "\n".join(lines) + "\n"


def _step_parameters(manifests: dict[str, dict], output: str, step: str) -> dict:
    for s in manifests.get(output, {}).get("steps", []):
        if s.get("name") == step:
            return s.get("parameters") or {}
    return {}


def _language_lines(manifests: dict[str, dict]) -> list[str]:
    """The language heard (and how sure), the translation, and what the transcription flagged for review."""
    heard = _step_parameters(manifests, "transcript.json", "transcribe")
    if not heard.get("language_used"):
        return []
    how = "detected" if heard.get("language_detected") else "given"
    sure = heard.get("language_probability")
    line = f"- language: {_cell(str(heard['language_used']))} ({how}" + (f", p {sure:.2f}" if sure is not None else "") + ")"
    if heard.get("translation"):
        line += "; English translation in subtitles.en.*"
    out = [line]
    if heard.get("flags"):
        out.append("- **for review:** " + ", ".join(_cell(str(f)) for f in heard["flags"]))
    return out


def _forbidden_lines(manifests: dict[str, dict]) -> list[str]:
    """Each cue holding a forbidden term, per subtitle language (from the SRTs' subtitles steps)."""
    out = []
    for name in sorted(n for n in manifests if n.endswith(".srt")):
        flagged = [c for c in _step_parameters(manifests, name, "subtitles").get("forbidden") or [] if isinstance(c, dict)]
        if flagged:
            out += ["", f"**Forbidden terms** in {len(flagged)} cue(s) of {_cell(name)}:", ""]
            out += [f"- cue {c['cue']} at {c['start']:.2f} s ({', '.join(map(_cell, c['terms']))}): {_cell(c['text'])}" for c in flagged]
    return out


def report_asset(result, source: Path) -> None:
    """Attach the outputs table and the summary to the current flow run (no-op outside one)."""
    if not _in_flow_run() or result.out_dir is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows, markdown = asset_summary(result, source)
    try:
        create_table_artifact(rows, key=_key(result.sha256, "-outputs"), description=f"{source.name}: outputs")
        create_markdown_artifact(markdown, key=_key(result.sha256), description=f"{source.name}: {result.status}")
    except Exception as exc:  # reporting never fails the asset
        log.warning("artifacts for %s not created: %s", source, exc)


def report_failure(source: Path, sha256: str | None, message: str) -> None:
    if not _in_flow_run():
        return
    from prefect.artifacts import create_markdown_artifact

    markdown = f"### {_cell(source.name)}: failed\n\n- source: `{_cell(str(source))}`\n- reason: {_cell(message)}\n"
    try:
        create_markdown_artifact(markdown, key=_key(sha256), description=f"{source.name}: failed")
    except Exception as exc:
        log.warning("failure artifact for %s not created: %s", source, exc)


def report_batch(results: list, key: str = "batch-inbox") -> None:
    """One table for a batch: every asset with its state, time and outputs folder."""
    if not _in_flow_run():
        return
    from prefect.artifacts import create_table_artifact

    rows = [
        {"asset": Path(r.source).name, "state": r.status, "kind": r.kind or "", "seconds": round(r.seconds, 1),
         "groups": r.group_times(), "outputs": r.out_dir or "", "message": r.message}  # fmt: skip
        for r in results
    ]
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    try:
        create_table_artifact(rows, key=key, description=f"{counts['done']} done, {counts['skipped']} up to date, {counts['failed']} failed")
    except Exception as exc:
        log.warning("batch artifact not created: %s", exc)
