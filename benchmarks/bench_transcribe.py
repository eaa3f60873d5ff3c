#!/usr/bin/env python
"""Benchmark: the transcribe step vs bare faster-whisper (whisper-base), real-time factors, translation, and memory.

    .venv/bin/python benchmarks/bench_transcribe.py          # 150 s of speech x 3 rounds; 10 min vs 1 min clips
    .venv/bin/python benchmarks/bench_transcribe.py --speech-seconds 40 --rounds 1 --long 60 --short 20   # smoke test

Everything lives under benchmarks/work/transcribe/ (git-ignored). The speech is
the real recordings in tests/data/*.wav (about 29 s, 16 kHz mono), repeated
with short silences of varying length to the length wanted.

1. Speed. The step's plain function, `assetline.tasks.transcribe.transcribe.fn`
   with the default recipe options (multilingual whisper-base from the pinned
   model cache, int8 on the CPU, beam 5, Silero VAD, word timestamps, language
   auto: detected in every window), against bare faster-whisper with the same
   model: `WhisperModel(folder, device="cpu", compute_type="int8")` with the
   same thread count, then `transcribe(path, beam_size=5, vad_filter=True,
   word_timestamps=True)` (language detected once, from the start), segments and words
   drained and written as JSON. Each contender runs in a fresh process, rounds
   alternating (bare, step, bare, step, ...), after one warm-up of each on a
   short clip. Timed inside the process: imports (apart), model load, and the
   transcription with its output written; the ratio is step / bare of model
   load + transcription. The whole process is timed too. Then the step with
   whisper-tiny.en (language en) on the same speech: the real-time factor of
   each model on this machine's cores.
1b. Translation. The step on Italian speech (Debian's Asterisk prompt
   demo-congrats, looped to --speech-seconds; `make test-deps` fetches it),
   with `translate_to: en` (the default: the translate task runs too) and with
   `translate_to: null`: the extra cost of the English translation.
2. Memory. `assetline run` (default recipe, PREFECT_API_URL unset, so
   Prefect's temporary server starts inside) on a 10-minute speech clip and on
   a 1-minute one, each in a fresh process: peak RSS of the largest process
   (`ru_maxrss` from wait4) and of the whole process tree (sampled). Flat means
   the 10-minute figure is about the 1-minute one. The same for footage
   (video.mp4, 160x90 at 10 fps, the speech as its sound), unless the 1-minute
   footage run says the 10-minute one would take longer than --video-limit.

Prints a markdown section and writes it to benchmarks/results/transcribe.md
(`--results` to change), with its key figures in transcribe.json beside it;
`benchmarks/report.py` puts it into RESULTS.md. Raw figures go to
benchmarks/work/transcribe/results.json. No timing assertions: exit 1 only
when something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import wave
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "transcribe"
SPEECH = REPO / "tests" / "data"
MODEL = "whisper-base"  # the default, multilingual
FAST_MODEL = "whisper-tiny.en"
RATE = 16_000
TARGET_RATIO = 1.10  # transcribe step / bare faster-whisper, same model
FLAT = 1.10  # peak memory, 10-minute clip / 1-minute clip: "flat" up to this


# --------------------------------------------------------------------------- inputs


def speech_clip(path: Path, seconds: float) -> Path:
    """`seconds` of real speech (tests/data/*.wav, repeated) with silences of 0.4 to 1.0 s between the pieces."""
    pieces = []
    for wav in sorted(SPEECH.glob("*.wav")):
        with wave.open(str(wav)) as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
                raise SystemExit(f"{wav}: expected 16 kHz mono 16-bit")
            pieces.append(w.readframes(w.getnframes()))
    if not pieces:
        raise SystemExit(f"no speech in {SPEECH}/*.wav")
    need = int(seconds * RATE) * 2
    out, i = bytearray(), 0
    while len(out) < need:
        out += pieces[i % len(pieces)]
        out += b"\0\0" * int(RATE * (0.4 + 0.1 * (i * 7 % 7)))  # 0.4 .. 1.0 s, not periodic with the pieces
        i += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(out[:need]))
    return path


def italian_clip(path: Path, seconds: float) -> Path | None:
    """`seconds` of real Italian speech: Debian's Asterisk demo-congrats (tests/helpers/speech.py), looped; None if absent."""
    from assetline.ffmpeg import run_ffmpeg

    sys.path.insert(0, str(REPO / "tests"))
    try:
        from helpers.speech import prompt

        wav = prompt("it", "demo-congrats").wav
    except Exception as exc:  # not fetched and no apt here
        print(f"[bench] no Italian speech ({exc}): translation not measured", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-stream_loop", "-1", "-i", str(wav), "-t", str(seconds), "-ar", str(RATE), "-ac", "1", str(path)], path)
    return path


def footage_clip(path: Path, speech: Path, seconds: float) -> Path:
    """video.mp4-style footage: ffmpeg's test pattern, 160x90 at 10 fps, H.264 + AAC, `speech` as its sound."""
    from assetline.ffmpeg import run_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc=size=160x90:rate=10:duration={seconds}", "-i", str(speech),
                "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "96k", "-t", str(seconds), "-movflags", "+faststart", str(path)], path)  # fmt: skip
    return path


# --------------------------------------------------------------------------- the contenders (own process)


def worker(kind: str, wav: Path, out: Path, folder: Path, threads: int) -> None:
    """One transcription in this process: bare faster-whisper or the step's plain function. Prints one JSON line."""
    t0 = time.perf_counter()
    import ctranslate2  # noqa: F401  (both load it; imported here so neither's load time holds it)
    import faster_whisper

    if kind != "bare":
        from assetline.config import TranscribeOptions
        from assetline.tasks.transcribe import transcribe, whisper_model
    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if kind == "bare":
        model = faster_whisper.WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                                            local_files_only=True)  # fmt: skip
        t2 = time.perf_counter()
        segments, info = model.transcribe(str(wav), beam_size=5, vad_filter=True, word_timestamps=True)
        records = [
            {"start": s.start, "end": s.end, "text": s.text,
             "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability} for w in s.words or ()]}
            for s in segments
        ]  # fmt: skip
        (out / "transcript.json").write_text(json.dumps({"language": info.language, "segments": records}, indent=2))
        t3 = time.perf_counter()
        words = [w["word"].strip() for s in records for w in s["words"]]
        duration, after_vad, used_threads = info.duration, info.duration_after_vad, threads
    else:
        options = {  # the default recipe's audio.transcribe, and the variants measured against it
            "step": TranscribeOptions(),
            "step-tiny": TranscribeOptions(model=FAST_MODEL),
            "step-notranslate": TranscribeOptions(translate_to=None),
        }[kind]
        whisper_model(options.model, options.device, options.compute_type, options.cpu_threads)  # the step's loader
        t2 = time.perf_counter()
        record = transcribe.fn(wav, out, options)  # finds the model in the per-process cache
        t3 = time.perf_counter()
        data = json.loads((out / "transcript.json").read_text())
        words = [w["word"].strip() for s in data["segments"] for w in s["words"]]
        p = record.parameters
        duration, after_vad, used_threads = p["duration"], p["duration_after_vad"], p["cpu_threads_used"]
        translated = p.get("translation") or {}
    print("WORKER_JSON " + json.dumps({
        "kind": kind, "import_s": t1 - t0, "load_s": t2 - t1, "run_s": t3 - t2, "duration": duration,
        "after_vad": after_vad, "threads": used_threads, "words": len(words), "text": " ".join(words),
        "language": data["language"] if kind != "bare" else info.language,
        "translate_s": translated.get("seconds", 0.0) if kind != "bare" else 0.0,
    }), flush=True)  # fmt: skip


# --------------------------------------------------------------------------- the benchmark


def _worker_info(result: dict) -> dict:
    for line in result["stdout"].splitlines():
        if line.startswith("WORKER_JSON "):
            return json.loads(line[len("WORKER_JSON ") :])
    return {}


def _len(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds % 60 == 0 else f"{seconds:g} s"


def _mean(xs: list[float]) -> float:
    return statistics.mean(xs) if xs else float("nan")


def transcript_duration(out: Path) -> float | None:
    found = sorted(out.rglob("transcript.json"))
    if not found:
        return None
    return json.loads(found[0].read_text()).get("duration")


def _recipe_window() -> float:
    """The default recipe's transcription window, in seconds."""
    from assetline.config import Recipe

    return Recipe().audio.transcribe.window_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech-seconds", type=float, default=150, help="clip for the speed rounds (default 150)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of bare, step (default 3)")
    parser.add_argument("--long", type=float, default=600, help="long clip for the memory figure, s (default 600)")
    parser.add_argument("--short", type=float, default=60, help="short clip it is compared with, s (default 60)")
    parser.add_argument("--window", type=float, default=None, metavar="S",
                        help="pass --set {audio,video}.transcribe.window_seconds=S (default: the recipe's)")  # fmt: skip
    parser.add_argument("--no-video", action="store_true", help="skip the footage memory runs")
    parser.add_argument("--video-limit", type=float, default=240, metavar="S",
                        help="skip the long footage run when the short one says it would take longer (default 240)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=120, metavar="S",
                        help="before each measurement wait up to S s for other load to drop (default 120; 0: don't)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=HERE / "results" / "transcribe.md", help="markdown to write")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.speech_seconds < 5 or args.short < 5 or args.long < args.short:
        parser.error("need --rounds >= 1, --speech-seconds and --short >= 5, --long >= --short")

    import bench_image as bi  # its process measuring: run_measured, quiet waits, left-over servers
    from report import target, write_fragment

    from assetline import models

    bi.QUIET_WAIT_S = max(0.0, args.quiet_wait)
    began = time.perf_counter()
    started = datetime.now(timezone.utc)
    folder = models.require(MODEL)  # verified here once; the bare worker is handed the folder
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    shutil.rmtree(WORK, ignore_errors=True)
    logs, clips, prefect_home = WORK / "logs", WORK / "clips", WORK / "prefect-home"
    prefect_home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ASSETLINE_RECIPE")}
    env.update(PREFECT_HOME=str(prefect_home), COLUMNS="200")
    problems: list[str] = []

    # 1. speed -----------------------------------------------------------------------------------
    speech = speech_clip(clips / "speed" / "speech.wav", args.speech_seconds)
    warm = speech_clip(clips / "warm" / "warm.wav", min(20.0, args.speech_seconds))

    def contender(kind: str, label: str, wav: Path) -> dict:
        out = WORK / "out" / label
        r = bi.run_measured(label, [sys.executable, str(Path(__file__).resolve()), "_worker", kind, str(wav), str(out),
                                    str(folder), str(threads)], env, logs)  # fmt: skip
        r["info"] = _worker_info(r)
        if r["rc"] != 0 or not r["info"]:
            problems.append(f"{label}: exit {r['rc']} (see {logs}/{label}.stderr)")
        return r

    for kind in ("bare", "step"):
        contender(kind, f"warmup-{kind}", warm)
    rounds = []
    for k in range(1, args.rounds + 1):
        rounds.append({"k": k, "bare": contender("bare", f"bare-{k}", speech), "step": contender("step", f"step-{k}", speech)})
    ok_rounds = [r for r in rounds if r["bare"]["info"] and r["step"]["info"]]
    contender("step-tiny", "warmup-step-tiny", warm)
    tiny_runs = [contender("step-tiny", f"step-tiny-{k}", speech) for k in range(1, args.rounds + 1)]
    tiny_runs = [r for r in tiny_runs if r["info"]]
    italian = italian_clip(clips / "italian" / "italian.wav", args.speech_seconds)
    translate_rounds = []
    if italian is not None:
        for k in range(1, args.rounds + 1):
            translate_rounds.append({"k": k, "with": contender("step", f"translate-{k}", italian),
                                     "without": contender("step-notranslate", f"notranslate-{k}", italian)})  # fmt: skip
        translate_rounds = [r for r in translate_rounds if r["with"]["info"] and r["without"]["info"]]

    # 2. memory ----------------------------------------------------------------------------------
    cli = bi._assetline_cmd()
    sets = []
    if args.window:
        sets = ["--set", f"audio.transcribe.window_seconds={args.window:g}", "--set", f"video.transcribe.window_seconds={args.window:g}"]

    def run(label: str, source: Path, seconds: float) -> dict:
        out = WORK / "out" / label
        r = bi.run_measured(label, [*cli, "run", str(source.parent), "--out", str(out), *sets], env, logs)
        left = bi.stop_leftover_servers(prefect_home)
        if left:
            problems.append(f"{label}: {len(left)} Prefect server(s) left running after exit (stopped)")
        r["seconds"], r["transcribed"] = seconds, transcript_duration(out)
        if r["rc"] != 0:
            problems.append(f"{label}: `assetline run` exited {r['rc']}: {bi.summary_line(r['stdout'])}")
        elif r["transcribed"] is None or abs(r["transcribed"] - seconds) > 1:
            problems.append(f"{label}: transcript.json covers {r['transcribed']} s, not {seconds:g} s")
        return r

    warm_run = run("memory-warmup", speech_clip(clips / "mem-warm" / "warm.wav", 5), 5)  # creates Prefect's database
    mem: dict[str, dict] = {}
    for label, seconds in (("audio-short", args.short), ("audio-long", args.long)):
        mem[label] = run(label, speech_clip(clips / label / "speech.wav", seconds), seconds)
    video_note = ""
    if args.no_video:
        video_note = "not run (--no-video)"
    else:
        short_speech = clips / "audio-short" / "speech.wav"
        mem["video-short"] = run("video-short", footage_clip(clips / "video-short" / "video.mp4", short_speech, args.short), args.short)
        overhead = warm_run["wall_s"]
        estimate = overhead + max(0.0, mem["video-short"]["wall_s"] - overhead) * args.long / args.short
        if mem["video-short"]["rc"] != 0:
            video_note = "long footage not run: the short one failed"
        elif estimate > args.video_limit:
            video_note = (f"long footage not run: from the {args.short:g} s clip ({mem['video-short']['wall_s']:.0f} s) "
                          f"it would take about {estimate:.0f} s, over --video-limit {args.video_limit:g} s")  # fmt: skip
        else:
            long_speech = clips / "audio-long" / "speech.wav"
            mem["video-long"] = run("video-long", footage_clip(clips / "video-long" / "video.mp4", long_speech, args.long), args.long)
    took = time.perf_counter() - began

    # report -------------------------------------------------------------------------------------
    def agg(kind: str) -> dict:
        rs = [r[kind] for r in ok_rounds]
        quiet = [x for x in rs if x["other_cores"] <= bi.QUIET_CORES] or rs
        total = [x["info"]["load_s"] + x["info"]["run_s"] for x in quiet]
        return {"n": len(rs), "quiet": sum(x["other_cores"] <= bi.QUIET_CORES for x in rs),
                "total_s": _mean(total), "load_s": _mean([x["info"]["load_s"] for x in quiet]),
                "run_s": _mean([x["info"]["run_s"] for x in quiet]), "import_s": _mean([x["info"]["import_s"] for x in quiet]),
                "wall_s": _mean([x["wall_s"] for x in quiet]), "cpu_s": _mean([x["cpu_s"] for x in quiet]),
                "maxrss_kb": max((x["maxrss_kb"] for x in rs), default=0),
                "other_cores": _mean([x["other_cores"] for x in rs])}  # fmt: skip

    o, targets, figures = [], [], {}
    o.append("# Transcription benchmark: the transcribe step vs bare faster-whisper, and memory on a long clip\n")
    flags = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in (("speech_seconds", args.speech_seconds),
                     ("rounds", args.rounds), ("long", args.long), ("short", args.short)))  # fmt: skip
    o.append(f"Run {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, took {took / 60:.1f} min: "
             f"`python benchmarks/bench_transcribe.py {flags}" + (" --no-video" if args.no_video else "")
             + (f" --window {args.window:g}" if args.window else "") + "`\n")  # fmt: skip
    o.append("## Speed: `transcribe.fn` vs bare faster-whisper\n")
    if ok_rounds:
        b, s = agg("bare"), agg("step")
        ratio = s["total_s"] / b["total_s"]
        audio = ok_rounds[0]["bare"]["info"]["duration"]
        same = all(r["bare"]["info"]["text"] == r["step"]["info"]["text"] for r in ok_rounds)
        o.append(f"{audio:.0f} s of real speech (tests/data, repeated with pauses; 16 kHz mono WAV), {MODEL} int8 on "
                 f"the CPU, {threads} threads each, beam 5, VAD, word timestamps, language detected (the step: in every "
                 f"window; bare: once, from the first 30 s). Each contender in a "
                 f"fresh process; {len(ok_rounds)} alternating round{'s' if len(ok_rounds) > 1 else ''} after one warm-up each. Times are the means "
                 f"of the quiet rounds (other load at most {bi.QUIET_CORES} cores: {b['quiet']} bare, {s['quiet']} "
                 f"step; all rounds if none was quiet).\n")  # fmt: skip
        o.append("| | bare faster-whisper | `transcribe.fn` | step / bare |\n|---|---:|---:|---:|")
        rows = (("imports, s (not in the ratio)", "import_s"), ("model load, s", "load_s"),
                ("transcription + output written, s", "run_s"), ("**model load + transcription, s**", "total_s"),
                ("whole process, s", "wall_s"), ("CPU time, s", "cpu_s"))  # fmt: skip
        for label, key in rows:
            o.append(f"| {label} | {b[key]:.2f} | {s[key]:.2f} | {s[key] / b[key]:.2f} |")
        o.append(f"| real-time factor (audio s per transcription s) | {audio / b['run_s']:.1f}× | {audio / s['run_s']:.1f}× | |")
        o.append(f"| peak RSS, MiB | {b['maxrss_kb'] / 1024:.0f} | {s['maxrss_kb'] / 1024:.0f} | |")
        o.append(f"| other load meanwhile, cores | {b['other_cores']:.2f} | {s['other_cores']:.2f} | |\n")
        o.append(f"Target: step / bare ≤ {TARGET_RATIO}: **{'met' if ratio <= TARGET_RATIO else 'missed'}** "
                 f"({ratio:.2f}" + ("" if ratio <= TARGET_RATIO else f", {ratio - TARGET_RATIO:.2f} over") + "). "
                 f"Words: {ok_rounds[0]['bare']['info']['words']} bare, {ok_rounds[0]['step']['info']['words']} step; "
                 f"{'the same words in every round' if same else '**the words differ** between the contenders'}. "
                 f"The step reads the audio a window at a time (`window_seconds` {_recipe_window():g}) and writes the full "
                 f"transcript.json with its provenance record; bare faster-whisper decodes the whole file itself.\n")  # fmt: skip
        o.append("| round | bare, s (other load) | step, s (other load) | ratio |\n|---:|---:|---:|---:|")
        for r in ok_rounds:
            bt = r["bare"]["info"]["load_s"] + r["bare"]["info"]["run_s"]
            st = r["step"]["info"]["load_s"] + r["step"]["info"]["run_s"]
            o.append(f"| {r['k']} | {bt:.2f} ({r['bare']['other_cores']:.2f}) | {st:.2f} ({r['step']['other_cores']:.2f}) | {st / bt:.2f} |")
        o.append("")
        targets.append(target("transcribe step / bare faster-whisper (model load + transcription)", ratio, "<=",
                              TARGET_RATIO, detail=f"{s['total_s']:.1f} s vs {b['total_s']:.1f} s for {audio:.0f} s of speech"))  # fmt: skip
        targets.append(target(f"transcription speed, step ({MODEL}, int8, {threads} cores)", audio / s["run_s"],
                              measured=f"{audio / s['run_s']:.1f}× real time", detail=f"bare {audio / b['run_s']:.1f}×"))  # fmt: skip
        figures["speed"] = {"audio_s": audio, "bare": b, "step": s, "ratio": ratio, "same_words": same, "threads": threads,
                            "languages": sorted({r["step"]["info"]["language"] for r in ok_rounds})}  # fmt: skip
        if not same:
            # Not a failure: the step detects per window and cuts windows at quiet points, so decoding
            # contexts differ; both are scored against the same speech by the tests' WER checks.
            o.append("(The words differ a little: the step transcribes a window at a time, cut at quiet points, "
                     "so Whisper's decoding context differs from one pass over the whole file.)\n")
        if tiny_runs:
            t_run = _mean([r["info"]["run_s"] for r in tiny_runs])
            o.append(f"### Real-time factor by model ({threads} cores)\n")
            o.append("| model | transcription, s | real-time factor |\n|---|---:|---:|")
            o.append(f"| {MODEL} (multilingual, default) | {s['run_s']:.2f} | {audio / s['run_s']:.1f}× |")
            o.append(f"| {FAST_MODEL} (English only) | {t_run:.2f} | {audio / t_run:.1f}× |\n")
            targets.append(target(f"transcription speed, step ({FAST_MODEL}, int8, {threads} cores)", audio / t_run,
                                  measured=f"{audio / t_run:.1f}× real time", detail=f"{MODEL}: {audio / s['run_s']:.1f}×"))  # fmt: skip
            figures["speed_tiny"] = {"run_s": t_run, "rtf": audio / t_run}
    else:
        o.append("No round completed: see Problems.\n")
        targets.append(target("transcribe step / bare faster-whisper", None, "<=", TARGET_RATIO))

    o.append("## Translation: the extra cost of the English translation\n")
    if translate_rounds:
        w = _mean([r["with"]["info"]["run_s"] for r in translate_rounds])
        wo = _mean([r["without"]["info"]["run_s"] for r in translate_rounds])
        tr = _mean([r["with"]["info"]["translate_s"] for r in translate_rounds])
        lang = translate_rounds[0]["with"]["info"]["language"]
        heard_s = translate_rounds[0]["with"]["info"]["duration"]
        o.append(f"{heard_s:.0f} s of Italian speech (Debian's Asterisk demo-congrats, looped), {MODEL}, detected as "
                 f"`{lang}`; {len(translate_rounds)} round(s), each a fresh process.\n")  # fmt: skip
        o.append("| | transcription only (`translate_to: null`) | with the translation (`translate_to: en`) | extra |\n|---|---:|---:|---:|")
        o.append(f"| step, s | {wo:.2f} | {w:.2f} | +{w - wo:.2f} s ({(w / wo - 1) * 100:.0f} %) |")
        o.append(f"| of which the translate task, s | | {tr:.2f} | |\n")
        targets.append(target("English translation, extra cost (step with / without)", w / wo,
                              measured=f"+{(w / wo - 1) * 100:.0f} %", detail=f"{w:.1f} s vs {wo:.1f} s for {heard_s:.0f} s of Italian"))  # fmt: skip
        figures["translation"] = {"with_s": w, "without_s": wo, "translate_s": tr, "audio_s": heard_s, "language": lang}
    else:
        o.append("Not measured: no Italian speech here (`make test-deps` fetches it).\n")

    o.append("## Memory: `assetline run` on a long clip vs a short one\n")
    o.append(f"Default recipe{' with window_seconds ' + format(args.window, 'g') if args.window else ''}, "
             "PREFECT_API_URL unset (Prefect's temporary server starts inside), each a fresh process. "
             "'Largest process': `ru_maxrss` from wait4 (the CLI, or any process it waited for); "
             "'process tree': the CLI and everything under it, Prefect's server included, sampled every 0.2 s.\n")  # fmt: skip
    o.append("| input | length | wall time, s | peak RSS, largest process, MiB | peak RSS, process tree, MiB | other load, cores |\n|---|---:|---:|---:|---:|---:|")
    for label, r in mem.items():
        o.append(f"| {label.replace('-', ', ')} | {_len(r['seconds'])} | {r['wall_s']:.1f} | {r['maxrss_kb'] / 1024:.0f} | "
                 f"{r['tree_peak_kb'] / 1024:.0f} | {r['other_cores']:.2f} |")  # fmt: skip
    o.append("")
    for kind in ("audio", "video"):
        lo, hi = mem.get(f"{kind}-short"), mem.get(f"{kind}-long")
        name = f"peak memory, {_len(args.long)} of {'audio' if kind == 'audio' else 'footage'} / {_len(args.short)}"
        if lo and hi and lo["rc"] == 0 and hi["rc"] == 0:
            m = hi["maxrss_kb"] / lo["maxrss_kb"]
            tree = hi["tree_peak_kb"] / lo["tree_peak_kb"] if lo["tree_peak_kb"] else float("nan")
            o.append(f"- {kind}: {hi['maxrss_kb'] / 1024:.0f} MiB for {_len(args.long)} vs {lo['maxrss_kb'] / 1024:.0f} MiB for "
                     f"{_len(args.short)}, ratio **{m:.2f}** (process tree {tree:.2f}): "
                     f"{'flat' if m <= FLAT else '**not flat**: +' + format((hi['maxrss_kb'] - lo['maxrss_kb']) / 1024, '.0f') + ' MiB'}.")  # fmt: skip
            targets.append(target(name, m, "<=", FLAT, target_text=f"flat (≤ {FLAT})",
                                  detail=f"{hi['maxrss_kb'] / 1024:.0f} vs {lo['maxrss_kb'] / 1024:.0f} MiB, largest process"))  # fmt: skip
            figures[f"memory_{kind}"] = {"long_kb": hi["maxrss_kb"], "short_kb": lo["maxrss_kb"], "ratio": m, "tree_ratio": tree,
                                         "long_wall_s": hi["wall_s"], "short_wall_s": lo["wall_s"]}  # fmt: skip
        elif kind == "video":
            o.append(f"- footage: {video_note or 'not measured (a run failed)'}.")
            targets.append(target(name, None, measured=video_note or "not measured"))
        else:
            o.append("- audio: not measured (a run failed).")
            targets.append(target(name, None, "<=", FLAT, target_text=f"flat (≤ {FLAT})"))
    window = args.window or _recipe_window()
    o.append(f"\nThe step holds one window of decoded audio (`window_seconds` {window:g} s, 16 kHz float32: "
             f"{window * RATE * 4 / 2**20:.0f} MiB) plus up to 20 s of look-ahead, so memory grows with the clip up "
             f"to the window's length and is flat beyond it; a clip of {_len(args.long)} is "
             f"{'one window' if args.long <= window + min(20, window / 2) else 'several windows'}.\n")  # fmt: skip
    if problems:
        o.append("## Problems\n\n" + "\n".join(f"- {p}" for p in problems) + "\n")
    text = "\n".join(o).rstrip("\n") + "\n"
    print(text)
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "rounds": ok_rounds, "memory": mem, "warm": warm_run,
           "problems": problems}  # fmt: skip
    (WORK / "results.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    notes = []
    if ok_rounds and not (b["quiet"] and s["quiet"]):
        notes.append("speed: not every contender had a quiet round (other load above "
                     f"{bi.QUIET_CORES} cores): the ratio is from a disturbed machine")  # fmt: skip
    busy = [label for label, r in mem.items() if r["other_cores"] > bi.QUIET_CORES]
    if busy:
        notes.append(f"memory runs with other load above {bi.QUIET_CORES} cores: {', '.join(busy)} (memory is "
                     "little affected; wall times are)")  # fmt: skip
    write_fragment(args.results, text, "transcribe", targets, figures, problems=problems, notes=notes)
    print(f"[bench] written to {args.results} (+ .json)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "_worker":
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6]))
        sys.exit(0)
    sys.exit(main())
