#!/usr/bin/env python
"""Benchmark: what Content Credentials (C2PA signing) cost, per output and as a share of the pipeline.

    .venv/bin/python benchmarks/bench_signing.py              # demo inputs + isolated signing, 5 repetitions
    .venv/bin/python benchmarks/bench_signing.py --reps 2     # quicker

Two measurements, everything under benchmarks/work/signing/ (git-ignored), with
keys of its own (a development CA made there, never the user's):

1. **In the pipeline.** `assetline run` on the demo inputs (four stills, a
   speech clip, a short video with speech; default recipe, Prefect's temporary
   server). Each JSON sidecar says when its manifest was built (`created_at`,
   just before signing); the sidecar's mtime is when it was written, just after
   signing, the read-back check included. Their difference is that output's
   signing cost, set against its asset's time (first step's start to last
   sidecar written) and against the whole run's wall time.
2. **Isolated.** `ContentSigner.sign` alone on unsigned files of several
   kinds and sizes (PNG of 0.25, 1 and 4 MP; MP4 of 320x180 and 1280x720;
   an SRT), each signed --reps times from a fresh copy: time per signature
   and the bytes the manifest adds.

The figures go into benchmarks/results/signing.md under their own heading
(replacing that section only, so --results may also name a file with other
sections), with the key figures in signing.json beside it, and are printed;
benchmarks/report.py assembles RESULTS.md from these. No timing assertions: exit 1 only when
something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "signing"
START, END = "<!-- bench_signing:start -->", "<!-- bench_signing:end -->"


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pipeline(env: dict) -> dict:
    """`assetline run` on the demo inputs; per-output signing time from the sidecars."""
    from assetline.demo import make_demo_inputs

    inputs = WORK / "inputs"
    make_demo_inputs(inputs)
    out = WORK / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "assetline.cli", "run", str(inputs), "--out", str(out)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"assetline run failed:\n{proc.stdout}\n{proc.stderr}")
    assets = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        outputs, first, last = [], None, None
        for sidecar in sorted(folder.glob("*.provenance.json")):
            m = json.loads(sidecar.read_text())
            written = sidecar.stat().st_mtime
            signing = written - parse_time(m["created_at"])
            first = min(first or 1e18, min(parse_time(s["started_at"]) for s in m["steps"]))
            last = max(last or 0, written)
            outputs.append({"name": m["output"]["path"], "bytes": m["output"]["bytes"], "signing_s": signing,
                            "store": m["signature"]["store"]})  # fmt: skip
        assets.append({"asset": folder.name, "outputs": outputs, "asset_s": last - first})
    return {"wall_s": wall, "assets": assets}


def unsigned_files(folder: Path) -> dict[str, Path]:
    """Files to sign in isolation: PNGs of three sizes, two MP4s, an SRT."""
    from PIL import Image
    from skimage import data

    from assetline.ffmpeg import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    base = Image.fromarray(data.astronaut())
    for label, side in (("PNG 0.25 MP", 512), ("PNG 1 MP", 1024), ("PNG 4 MP", 2048)):
        path = folder / f"still-{side}.png"
        base.resize((side, side), Image.Resampling.LANCZOS).save(path, compress_level=4)
        made[label] = path
    speech = REPO / "assetline" / "demo_data" / "speech.wav"
    for label, size, seconds in (("MP4 320x180, 4 s", "320x180", 4.2), ("MP4 1280x720, 10 s", "1280x720", 10)):
        path = folder / f"clip-{size}.mp4"
        run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}", "-stream_loop", "-1",
                    "-i", str(speech), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-t", str(seconds), "-movflags", "+faststart", str(path)], path)  # fmt: skip
        made[label] = path
    srt = folder / "subtitles.srt"
    srt.write_text("".join(f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\nLine {i} of the subtitles.\n\n"
                           for i in range(1, 40)))  # fmt: skip
    made["SRT, 39 cues"] = srt
    return made


def isolated(reps: int) -> list[dict]:
    from assetline.keys import signing_key, trust_anchors
    from assetline.provenance import InputRef, RunRef, StepRecord, ToolRef, build_manifest
    from assetline.provenance.signing import ContentSigner
    from assetline.storage import sha256_file

    files = unsigned_files(WORK / "isolated-inputs")
    source = files["PNG 0.25 MP"]
    signer = ContentSigner(signing_key(create=True)[0], trust_anchors()[0])
    rows = []
    for label, original in files.items():
        times = []
        added = 0
        for rep in range(reps + 1):  # the first is a warm-up, not counted
            folder = WORK / "isolated" / f"{original.stem}-{rep}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            target = folder / ("subtitles.srt" if original.suffix == ".srt" else f"output{original.suffix}")
            shutil.copyfile(original, target)
            step = StepRecord(name="upscale", tool=ToolRef(name="bench", version="1"), parameters={"scale": 2},
                              started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z",
                              digital_source_type="algorithmicallyEnhanced", output=target.name)  # fmt: skip
            ref = InputRef(path=str(source), sha256=sha256_file(source), role="source")
            manifest = build_manifest(target, [ref], [step], "0" * 64, RunRef())
            began = time.perf_counter()
            summary = signer.sign(target, manifest)
            elapsed = time.perf_counter() - began
            if rep:
                times.append(elapsed)
            store = target if summary["store"] == "embedded" else target.with_name(target.name + ".c2pa")
            added = store.stat().st_size - (original.stat().st_size if store == target else 0)
        rows.append({"file": label, "bytes": original.stat().st_size, "mean_ms": statistics.mean(times) * 1000,
                     "min_ms": min(times) * 1000, "added_bytes": added,
                     "where": "embedded" if store == target else "sidecar .c2pa"})  # fmt: skip
    return rows


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def report(run: dict, rows: list[dict], reps: int, took: float, loads: tuple[float, float]) -> str:
    import c2pa

    from assetline import __version__

    cores = os.cpu_count()
    lines = [START, "# Signing benchmark: Content Credentials (C2PA) per output", ""]
    lines.append(f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, `python benchmarks/bench_signing.py --reps {reps}` "
                 f"(took {took / 60:.1f} min); {platform.processor() or platform.machine()}, {cores} cores, "
                 f"Python {platform.python_version()}; assetline {__version__}, c2pa-python {c2pa.__version__} "
                 f"(c2pa-rs {c2pa.sdk_version()}), ES256 development key, no timestamp authority. "
                 f"1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end "
                 f"(with {cores} cores, anything near {cores} means other work shared them).")  # fmt: skip
    lines += ["", "## In the pipeline: `assetline run` on the demo inputs", ""]
    signing_total = sum(o["signing_s"] for a in run["assets"] for o in a["outputs"])
    n_outputs = sum(len(a["outputs"]) for a in run["assets"])
    lines.append(f"{len(run['assets'])} assets, {n_outputs} outputs, `assetline run` wall time {run['wall_s']:.1f} s; "
                 f"signing (manifest built, signed, embedded or written beside, read back and validated) "
                 f"{signing_total:.2f} s in all, **{signing_total / run['wall_s']:.1%} of the wall time**, "
                 f"{signing_total / n_outputs * 1000:.0f} ms per output on average.")  # fmt: skip
    lines += ["", "| asset | output | bytes | manifest | signing, ms | share of the asset's time |", "|---|---|---:|---|---:|---:|"]
    for a in run["assets"]:
        for o in a["outputs"]:
            lines.append(f"| {a['asset']} | {o['name']} | {o['bytes']:,} | {o['store']} | {o['signing_s'] * 1000:.0f} | "
                         f"{o['signing_s'] / a['asset_s']:.1%} of {a['asset_s']:.1f} s |")  # fmt: skip
    lines += ["", f"## Isolated: `ContentSigner.sign` alone, mean of {reps} (after one warm-up)", "",
              "| file | bytes | manifest | signing, ms (mean / min) | bytes the manifest adds |", "|---|---:|---|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['file']} | {r['bytes']:,} | {r['where']} | {r['mean_ms']:.0f} / {r['min_ms']:.0f} | {r['added_bytes']:,} |")
    lines += ["", "Signing reads the whole file (the hard binding hashes every byte; for pictures c2pa also",
              "decodes them for the thumbnail), writes it once more with the manifest inside, and",
              "assetline reads it back to check the result, so its cost grows with the file; the",
              "thumbnail (long edge 512) and the ingredient (the input, read for its own manifest) are",
              "the rest.", END]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_section(results: Path, section: str) -> None:
    text = results.read_text(encoding="utf-8") if results.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    results.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="signatures per file in the isolated part")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "signing.md",
                        help="markdown file to update; its key figures go to the .json beside it")  # fmt: skip
    args = parser.parse_args()
    began, load_before = time.perf_counter(), load_average()
    WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ASSETLINE_KEYS": str(WORK / "keys"), "PREFECT_HOME": str(WORK / "prefect-home")}
    for name in ("PREFECT_API_URL", "ASSETLINE_SIGNING_CERT", "ASSETLINE_SIGNING_KEY", "ASSETLINE_TRUST_ANCHORS"):
        env.pop(name, None)
    os.environ.update({k: env[k] for k in ("ASSETLINE_KEYS", "PREFECT_HOME")})
    for name in ("ASSETLINE_SIGNING_CERT", "ASSETLINE_SIGNING_KEY", "ASSETLINE_TRUST_ANCHORS"):
        os.environ.pop(name, None)
    from assetline.keys import signing_key

    signing_key(create=True)  # the benchmark's own development CA, before the run
    print("[bench] assetline run on the demo inputs", file=sys.stderr)
    run = pipeline(env)
    print(f"[bench] isolated signing, {args.reps} repetitions", file=sys.stderr)
    rows = isolated(args.reps)
    section = report(run, rows, args.reps, time.perf_counter() - began, (load_before, load_average()))
    print(section)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    write_section(args.results, section)
    from report import target, write_fragment  # benchmarks/report.py: the key figures, as JSON beside the section

    total = sum(o["signing_s"] for a in run["assets"] for o in a["outputs"])
    n_out = sum(len(a["outputs"]) for a in run["assets"])
    key = {"pipeline_wall_s": run["wall_s"], "signing_s": total, "outputs": n_out, "share": total / run["wall_s"],
           "ms_per_output": total / n_out * 1000, "isolated_ms": {r["file"]: r["mean_ms"] for r in rows},
           "added_bytes": {r["file"]: r["added_bytes"] for r in rows}}  # fmt: skip
    targets = [
        target("signing, share of `assetline run`'s wall time (demo inputs)", key["share"],
               measured=f"{key['share']:.1%}", detail=f"{key['ms_per_output']:.0f} ms per output, {n_out} outputs"),
        target("signing alone, per file", min(key["isolated_ms"].values()),
               measured=f"{min(key['isolated_ms'].values()):.0f} to {max(key['isolated_ms'].values()):.0f} ms",
               detail=f"manifest adds {min(key['added_bytes'].values()) / 1000:.0f} to {max(key['added_bytes'].values()) / 1000:.0f} KB"),
    ]  # fmt: skip
    write_fragment(args.results, None, "signing", targets, key)  # the section is written above
    (WORK / "results.json").write_text(json.dumps({"pipeline": run, "isolated": rows}, indent=1), encoding="utf-8")
    print(f"[bench] written to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
