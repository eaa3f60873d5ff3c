#!/usr/bin/env python
"""Fuzzing the probe/route step and the subtitle builder with hypothesis.

    .venv/bin/python benchmarks/fuzz.py                          # every target, an hour-equivalent (make fuzz)
    .venv/bin/python benchmarks/fuzz.py --examples 2000          # a few minutes: each target 2000 cases
    .venv/bin/python benchmarks/fuzz.py --target probe --examples 50000 --seed 7

Targets, and what must hold for every case:

probe       A file of random bytes, or a small real PNG, JPEG (with EXIF), GIF, WebP,
            TIFF (16-bit), BMP, ICO, MP4 (H.264 + AAC), MKV, WAV, MP3, FLAC or OGG
            mutated (bits flipped, cut short, bytes inserted, numbers in headers
            replaced by edge values, chunks repeated, two files spliced), goes
            through the route step: `assets.identify`, then what its kind's flow
            does first (`media.load_image`, or `media.probe` and
            `video.probe_picture`). Only assetline's own errors
            (`AssetlineError`) may come out; no other exception, no hang.
subtitles   Random timed words (negative, huge, NaN and infinite times; any
            Unicode, lone surrogates, control characters, ASS override blocks
            `{\\an8}` `{\\pos(..)}` `{\\p1}`, tags, entities, newlines) and random
            recipe rules go through `build_cues` and `write_subtitles`. Either
            `build_cues` refuses with ValueError (what the subtitles task turns
            into a BadInputError) or both files are written, pysubs2 reads back
            as many cues with the same times, and no override block, tag or
            backslash survives in any cue text.
transcript  Random `transcript.json` documents (well-formed JSON of the wrong
            shape, bad numbers, huge and odd strings) go through the subtitles
            task (`subtitles.fn`): only AssetlineError may come out.

A case that breaks a rule stops its target; hypothesis shrinks it and prints the
smallest example (the failing file for probe is left in benchmarks/work/fuzz/).
A hang (a case over --hang-seconds) dumps every thread's stack and exits 3.

Figures: the default (--examples 0) runs each target for its hour-equivalent
share: 20 minutes of cases each at the rates measured on the reference machine
(2 cores, AMD EPYC, nothing else running): probe about 450 cases/s, subtitles
about 150/s, transcript about 110/s (each run prints its rates), i.e. 540 000,
180 000 and 130 000 cases.

Found by it so far, each fixed with a regression test in tests/test_hostile.py:
a PNG whose header Pillow rejects with ValueError escaped identify(); a lone
surrogate in a word stopped write_subtitles (UnicodeEncodeError); a word past
99:59:59.999 was silently clamped by pysubs2 into a zero-length cue.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work" / "fuzz"
HOUR_EQUIVALENT = {"probe": 540_000, "subtitles": 180_000, "transcript": 130_000}

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402


# --------------------------------------------------------------------------- seeds


def make_seeds(folder: Path) -> dict[str, bytes]:
    """Small real files of every format the route step meets, made here (Pillow, the shipped ffmpeg)."""
    import numpy as np
    from PIL import Image

    from assetline.ffmpeg import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    seeds: dict[str, bytes] = {}

    def save(name: str, img: Image.Image, **kw) -> None:
        path = folder / name
        img.save(path, **kw)
        seeds[name] = path.read_bytes()

    save("rgba.png", rgb.convert("RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    save("exif.jpg", rgb, quality=80, exif=exif.tobytes())
    save("cmyk.jpg", rgb.convert("CMYK"), quality=80)
    save("palette.gif", rgb.convert("P"), transparency=0)
    save("lossy.webp", rgb, quality=50)
    save("deep.tif", rgb.convert("I;16"))
    save("plain.bmp", rgb)
    save("icon.ico", rgb)
    av_seeds = {
        "clip.mp4": ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=10:duration=0.3", "-f", "lavfi", "-i",
                     "sine=duration=0.3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
        "clip.mkv": ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=10:duration=0.3", "-c:v", "mpeg4"],
        "tone.wav": ["-f", "lavfi", "-i", "sine=duration=0.2:sample_rate=8000"],
        "tone.mp3": ["-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "libmp3lame"],
        "tone.flac": ["-f", "lavfi", "-i", "sine=duration=0.2:sample_rate=8000", "-c:a", "flac"],
        "tone.ogg": ["-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "libvorbis"],
    }  # fmt: skip
    for name, args in av_seeds.items():
        path = folder / name
        run_ffmpeg([*args, str(path)], path)
        seeds[name] = path.read_bytes()
    return seeds


INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
               b"\x80\x00\x00\x00", b"\x00\x00\xff\xff", b"\xff\xff\x00\x00", b"\x00\x01\x00\x00", b"\x01\x00\x00\x00",
               b"\xff\xff\xff\xfe", b"\x00\x00\x00\x01"]  # fmt: skip


@st.composite
def media_bytes(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(description, bytes): random bytes, or a real file with a few mutations."""
    if draw(st.integers(0, 9)) == 0:
        return "random", draw(st.binary(max_size=4096))
    names = sorted(seeds)
    name = draw(st.sampled_from(names))
    data = bytearray(seeds[name])
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "trunc", "insert", "overwrite", "repeat", "splice", "header"]))
        at = int(draw(st.floats(0, 1)) * len(data)) if data else 0
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "trunc":
            data = data[:at]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "overwrite":
            value = draw(st.sampled_from(INTERESTING))
            data[at : at + len(value)] = value
        elif op == "repeat" and data:
            length = draw(st.integers(1, 256))
            data[at:at] = data[at : at + length] * draw(st.integers(1, 8))
        elif op == "splice":
            other = seeds[draw(st.sampled_from(names))]
            data = data[:at] + other[int(draw(st.floats(0, 1)) * len(other)) :]
        elif op == "header" and data:  # the first 64 bytes hold the sizes, counts and offsets parsers trust
            pos = draw(st.integers(0, min(63, len(data) - 1)))
            value = draw(st.sampled_from(INTERESTING))
            data[pos : pos + len(value)] = value
        ops.append(op)
    return f"{name} {'+'.join(ops)}", bytes(data)


# --------------------------------------------------------------------------- targets


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.cases = 0
        self.outcomes: Counter[str] = Counter()
        self.seconds = 0.0


def probe_target(examples: int, seeds: dict[str, bytes], case_dir: Path, stats: Target, hang: float):
    from assetline.assets import identify
    from assetline.errors import AssetlineError
    from assetline.media import load_image, probe
    from assetline.video import probe_picture

    path = case_dir / "case.bin"

    @given(media_bytes(seeds))
    def case(sample: tuple[str, bytes]) -> None:
        label, data = sample
        path.write_bytes(data)
        stats.cases += 1
        faulthandler.dump_traceback_later(hang, exit=True)
        try:
            asset = identify(path)
            if asset.kind == "image":
                load_image(path, max_pixels=4_000_000)
            else:
                probe(path)
                if asset.kind == "video":
                    probe_picture(path)
            stats.outcomes[f"routed {asset.kind}"] += 1
        except AssetlineError as exc:
            stats.outcomes["refused: " + exc.cause.split(":")[0][:40]] += 1
        except BaseException as exc:
            raise AssertionError(f"{label}: {type(exc).__name__}: {exc}") from exc
        finally:
            faulthandler.cancel_dump_traceback_later()

    return case


_ASS_CODES = [r"{\an8}", r"{\pos(0,0)}", r"{\p1}m 0 0 l 9 0 9 9{\p0}", r"{\b1}", r"{\fs200}", r"{\k50}", r"\N", r"\h",
              r"\n", "<i>", "</i>", "<b>", "&amp;", "&lt;", "-->", "00:00:01,000 --> 00:00:02,000", "WEBVTT", "NOTE",
              "{", "}", "\\", "\r\n", "\n\n", "\x00", "\x1b[31m", "\u200f", "\u202e", "\ufeff", "\ud800", "\udfff",
              "e\u0301", "👍🏽", "日本語", "ﷺ"]  # fmt: skip

words_text = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(st.sampled_from(_ASS_CODES), st.text(max_size=6)), max_size=5).map("".join),
    st.text(alphabet=st.characters(codec=None), max_size=12),
).map(lambda s: s if s[:1].isspace() or not s else " " + s)
times = st.one_of(
    st.floats(-5, 120, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-9, 1e9, 1e300, -1e300, math.inf, -math.inf, math.nan]),
)


@st.composite
def timed_words(draw):
    from assetline.transcript import Word

    words = []
    clock = draw(st.floats(0, 10))
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 99)) == 0:  # an arbitrary, possibly absurd, timing
            start, end = draw(times), draw(times)
        else:
            clock += draw(st.floats(0, 3))
            start, end = clock, clock + draw(st.floats(0, 2))
        words.append(Word(start, end, draw(words_text)))
    return words


@st.composite
def subtitle_rules(draw):
    from assetline.config import SubtitleOptions

    low = draw(st.floats(0.1, 10))
    return SubtitleOptions(
        max_chars_per_line=draw(st.integers(10, 100)),
        max_lines=draw(st.integers(1, 4)),
        min_duration=low,
        max_duration=draw(st.floats(max(1.0, low), 30)),
        max_chars_per_second=draw(st.floats(5, 60)),
        min_gap_frames=draw(st.integers(0, 25)),
        fps=draw(st.floats(1, 240)),
        long_pause=draw(st.floats(0.01, 30)),
    )


_SRT_TIMING = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})$")
_VTT_TIMING = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def strict_cues(text: str, fmt: str) -> list[tuple[int, int, list[str]]]:
    """Cues as a strict reader finds them (SubRip: index, timing, text; WebVTT: header, then timing, text).

    Raises AssertionError for anything out of place: a block without its timing line, a stray line.
    """
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if fmt == "vtt":
        assert blocks and blocks[0].startswith("WEBVTT"), "vtt: no WEBVTT header"
        blocks = blocks[1:]
    cues = []
    for index, block in enumerate(blocks, 1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines[0] == str(index), f"srt: block {index} starts {lines[0]!r}"
            lines = lines[1:]
        elif lines and "-->" not in lines[0]:  # a WebVTT cue may have an identifier line
            lines = lines[1:]
        match = (_SRT_TIMING if fmt == "srt" else _VTT_TIMING).match(lines[0]) if lines else None
        assert match, f"{fmt}: block {index} has no timing line: {block!r}"
        g = match.groups()
        cues.append((_ms(*g[:4]), _ms(*g[4:]), lines[1:]))
    return cues


def subtitles_target(examples: int, case_dir: Path, stats: Target, hang: float):
    import pysubs2

    from assetline.captions import build_cues, write_subtitles

    srt, vtt = case_dir / "subtitles.srt", case_dir / "subtitles.vtt"

    fps = st.integers(0, 9).flatmap(
        lambda n: st.sampled_from([0.0, -1.0, math.nan, math.inf]) if n == 0 else st.one_of(st.none(), st.floats(1, 240))
    )

    @given(timed_words(), subtitle_rules(), fps)
    def case(words, rules, fps) -> None:
        stats.cases += 1
        faulthandler.dump_traceback_later(hang, exit=True)
        try:
            try:
                build = build_cues(words, rules, fps)
            except ValueError:
                stats.outcomes["refused (ValueError: bad times or fps)"] += 1
                return
            write_subtitles(build.cues, srt, vtt)
            for path, fmt in ((srt, "srt"), (vtt, "vtt")):
                text = path.read_text(encoding="utf-8")
                strict = strict_cues(text, fmt)  # as players find cues: blank line, (index,) timing line
                assert len(strict) == len(build.cues), f"{fmt}: {len(strict)} cues in the file, {len(build.cues)} built"
                for (start, end, lines), cue in zip(strict, build.cues):
                    assert (start, end) == (round(cue.start * 1000), round(cue.end * 1000)), (fmt, start, end, cue)
                    assert 0 <= start < end, (fmt, start, end)
                    assert len(lines) == len(cue.lines), (fmt, lines, cue.lines)
                    for line in lines:
                        assert not any(ch in line for ch in "{}\\"), f"{fmt}: live code in {line!r}"
                        assert "<" not in line and "-->" not in line, f"{fmt}: tag or arrow in {line!r}"
                # pysubs2 (what ASS conversion uses) reads the same times and no override block
                read = pysubs2.SSAFile.from_string(text, format_=fmt)
                assert len(read) >= len(build.cues)  # its reader also takes timestamp-like text for timings
                for event in read:
                    assert event.plaintext == event.text.replace(r"\N", "\n"), f"{fmt}: override in {event.text!r}"
            stats.outcomes[f"{min(len(build.cues), 10)}{'+' if len(build.cues) >= 10 else ''} cues"] += 1
        finally:
            faulthandler.cancel_dump_traceback_later()

    return case


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                         st.text(max_size=30), st.sampled_from(_ASS_CODES))  # fmt: skip
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                  st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=20)  # fmt: skip


@st.composite
def transcript_documents(draw) -> str:
    """Mostly the right shape with odd values; sometimes any JSON at all; sometimes not JSON."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind == 1:
        return json.dumps(draw(json_values))
    odd = draw(st.integers(0, 3)) == 0  # a quarter of the documents get odd values anywhere

    def mostly(good, bad=json_scalars):
        return st.one_of(good, bad) if odd else good

    word_time = st.integers(0, 19).flatmap(lambda n: times if n == 0 else st.floats(0, 600))
    word = st.fixed_dictionaries(
        {"start": mostly(word_time), "end": mostly(word_time), "word": mostly(words_text)},
        optional={"probability": mostly(st.floats(0, 1))},
    )  # fmt: skip
    segment = st.fixed_dictionaries({"start": word_time, "end": word_time, "text": st.text(max_size=10),
                                     "words": mostly(st.lists(word, max_size=12))})  # fmt: skip
    doc = {
        "schema": "assetline/transcript@1",
        "language": draw(mostly(st.just("en"))),
        "duration": draw(mostly(times)),
        "model": draw(mostly(st.just({"name": "whisper-tiny.en", "sha256": "0" * 64}), json_values)),
        "options": {},
        "segments": draw(mostly(st.lists(mostly(segment, json_values), max_size=6), json_values)),
    }
    if odd and draw(st.booleans()):
        doc[draw(st.text(max_size=6))] = draw(json_values)
    text = json.dumps(doc, allow_nan=True)  # JSON with NaN and Infinity, as Python writes it
    return text


def transcript_target(examples: int, case_dir: Path, stats: Target, hang: float):
    from assetline.errors import AssetlineError
    from assetline.tasks.subtitles import subtitles

    path = case_dir / "transcript.json"

    @given(transcript_documents())
    def case(document: str) -> None:
        stats.cases += 1
        path.write_text(document, encoding="utf-8", errors="surrogatepass")
        faulthandler.dump_traceback_later(hang, exit=True)
        try:
            subtitles.fn(path, case_dir)
            stats.outcomes["subtitles written"] += 1
        except AssetlineError as exc:
            stats.outcomes["refused: " + exc.cause.split(":")[0][:40]] += 1
        except BaseException as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            faulthandler.cancel_dump_traceback_later()

    return case


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["all", *HOUR_EQUIVALENT], default="all")
    parser.add_argument("--examples", type=int, default=0,
                        help="cases per target (0: each target's hour-equivalent share, see the module doc)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument("--hang-seconds", type=float, default=60.0, help="a case taking longer is a hang")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address-space limit: a bomb fails, not the machine")
    args = parser.parse_args(argv)

    resource.setrlimit(resource.RLIMIT_AS, (int(args.memory_gib * 2**30),) * 2)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    WORK.mkdir(parents=True, exist_ok=True)
    case_dir = Path(tempfile.mkdtemp(prefix="case-", dir=WORK))
    seeds = make_seeds(WORK / "seeds")
    targets = list(HOUR_EQUIVALENT) if args.target == "all" else [args.target]
    failed = 0
    print(f"fuzz: seeds {', '.join(sorted(seeds))}", flush=True)
    for name in targets:
        examples = args.examples or HOUR_EQUIVALENT[name]
        stats = Target(name)
        if name == "probe":
            test = probe_target(examples, seeds, case_dir, stats, args.hang_seconds)
        elif name == "subtitles":
            test = subtitles_target(examples, case_dir, stats, args.hang_seconds)
        else:
            test = transcript_target(examples, case_dir, stats, args.hang_seconds)
        test = settings(
            max_examples=examples,
            deadline=None,
            database=DirectoryBasedExampleDatabase(str(WORK / "db")),
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            print_blob=True,
        )(test)
        if args.seed is not None:
            test = hypothesis_seed(args.seed)(test)
        started = time.perf_counter()
        error = None
        try:
            test()
        except Exception as exc:  # a broken rule: hypothesis has printed the smallest example
            error = exc
            failed += 1
        stats.seconds = time.perf_counter() - started
        rate = stats.cases / stats.seconds if stats.seconds else 0.0
        verdict = "FOUND A PROBLEM" if error else "ok"
        print(f"\n== {name}: {stats.cases} cases in {stats.seconds:.0f} s ({rate:.0f}/s): {verdict}", flush=True)
        for outcome, count in stats.outcomes.most_common(12):
            print(f"   {count:8d}  {outcome}")
        if error is not None:
            print("".join(traceback.format_exception_only(type(error), error)).strip())
            if name == "probe":
                kept = WORK / "probe-failure.bin"
                shutil.copyfile(case_dir / "case.bin", kept)
                print(f"   the last case's file: {kept}")
    shutil.rmtree(case_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
