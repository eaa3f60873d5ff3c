"""Loudness normalisation to EBU R128: `audio.normalized.flac`, levelled by ffmpeg's two-pass `loudnorm`.

The first pass measures the source; the second applies one gain to the whole file
(linear mode) from those measurements; a third pass measures the result, so
provenance records the loudness before and after.

Measuring: loudnorm's usual first pass (dynamic mode) misreads integrated
loudness by up to 0.75 LU (on the 4 s ARCTIC clip: -37.25 LUFS, where ffmpeg's
ebur128 meter reads -36.5 and a BS.1770-4 reference -36.56). The same filter in
linear mode at unity gain, fed at 192 kHz as in dynamic mode, reads within
0.05 LU of the reference; that meter gives the levels, and the usual first
pass, run alongside on the same decode, gives only `target_offset`, the
correction loudnorm wants should it fall back to dynamic mode.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline.config import LoudnessOptions
from assetline.errors import AssetlineError, BadInputError
from assetline.ffmpeg import ffmpeg_python, run_ffmpeg
from assetline.media import MediaInfo, probe
from assetline.provenance import StepRecord, utc_now
from assetline.storage import atomic_path
from assetline.tasks._common import ffmpeg_tool

OUTPUT_NAME = "audio.normalized.flac"
SAMPLE_RATE = 48_000  # loudnorm works at 192 kHz; the output comes back to broadcast rate
SILENT_NOTE = "silent: not normalised"

METER_RATE = 192_000  # loudnorm's own rate in dynamic mode: a sample peak there is close to the true peak

# Each loudnorm is named (`loudnorm@meter`), so its report is found whatever order ffmpeg-python lays the
# graph out in. It prints the JSON after a line such as "[loudnorm@meter @ 0x55d1...]".
_REPORT = re.compile(r"\[(loudnorm@\w+) @ [^\]]*\]\s*(\{.*?\})", re.DOTALL)

# Ranges loudnorm accepts for the measured_* options: it refuses a value outside them.
_MEASURED_I = (-99.0, 0.0)
_MEASURED_TP = (-99.0, 99.0)
_MEASURED_LRA = (0.0, 99.0)
_MEASURED_THRESH = (-99.0, 0.0)
_OFFSET = (-99.0, 99.0)


@dataclass(frozen=True)
class Loudness:
    """One loudnorm measurement (EBU R128 / ITU-R BS.1770) of an audio stream.

    `integrated_lufs` is -inf when every 400 ms block falls below the -70 LUFS
    absolute gate (digital silence, or dither alone); `true_peak_dbtp` is -inf
    for digital silence.
    """

    integrated_lufs: float
    true_peak_dbtp: float
    loudness_range_lu: float
    threshold_lufs: float  # the relative gate: integrated loudness - 10 LU
    target_offset_lu: float  # loudnorm's first-pass correction for its dynamic mode (its `offset`)

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.integrated_lufs)

    def as_parameters(self) -> dict[str, float | None]:
        """JSON-ready values; an infinite level (silence) becomes null."""
        return {
            "integrated_lufs": _finite_or_none(self.integrated_lufs),
            "true_peak_dbtp": _finite_or_none(self.true_peak_dbtp),
            "loudness_range_lu": _finite_or_none(self.loudness_range_lu),
            "threshold_lufs": _finite_or_none(self.threshold_lufs),
            "target_offset_lu": _finite_or_none(self.target_offset_lu),
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _loudnorm_report(stderr: str, subject: Path, name: str) -> dict[str, str]:
    """The JSON block the loudnorm named `name` ("loudnorm@meter") printed (print_format=json)."""
    for found, block in _REPORT.findall(stderr):
        if found == name:
            try:
                return json.loads(block)
            except json.JSONDecodeError as exc:
                raise AssetlineError(subject, f"cannot read loudnorm's measurement ({exc})") from None
    raise AssetlineError(subject, "ffmpeg loudnorm printed no measurement")


def _targets(options: LoudnessOptions) -> dict[str, float]:
    return {"I": options.integrated_lufs, "TP": options.true_peak_dbtp, "LRA": options.loudness_range_lu}


def _require_audio(path: Path, info: MediaInfo | None = None) -> None:
    if (info or probe(path)).audio is None:  # probe: BadInputError for unreadable files
        raise BadInputError(path, "no audio stream: nothing to normalise")


def _unity_meter(stream, targets: LoudnessOptions):
    """loudnorm in linear mode with a gain of 0 dB: it passes the audio through and measures it."""
    # Made-up measurements that satisfy its linear-mode test: I equal to the target (no gain),
    # a true peak far below any target, a range of 1 LU, a gate that is not its -70 "unset".
    return stream.filter("aresample", METER_RATE).filter(
        "loudnorm@meter", **_targets(targets), measured_I=targets.integrated_lufs,
        measured_TP=-99, measured_LRA=1, measured_thresh=-80, linear="true", print_format="json",
    )  # fmt: skip


def measure_loudness(
    path: Path, stream: int = 0, targets: LoudnessOptions = LoudnessOptions(), info: MediaInfo | None = None
) -> Loudness:
    """Measure audio stream `stream` of `path` (one ffmpeg run; nothing is written).

    Args:
        path: any file ffmpeg reads with at least one audio stream; none is a
            `BadInputError` ("no audio stream").
        stream: which audio stream (0: the first).
        targets: the targets `target_offset_lu` is reckoned against (default
            -23 LUFS, -1 dBTP, 7 LU); the levels do not depend on them.
        info: what probing `path` found already (`Asset.info`); None: probe it here.
    """
    _require_audio(path, info)
    split = ffmpeg_python.input(str(path))[f"a:{stream}"].filter_multi_output("asplit")  # one decode, two meters
    first_pass = split[0].filter("loudnorm@first", **_targets(targets), print_format="json")
    graph = ffmpeg_python.merge_outputs(
        first_pass.output("-", f="null"), _unity_meter(split[1], targets).output("-", f="null")
    )
    proc = run_ffmpeg(graph, path, bad_input=True, global_options=["-nostats"])
    first = _loudnorm_report(proc.stderr, path, "loudnorm@first")
    meter = _loudnorm_report(proc.stderr, path, "loudnorm@meter")
    return Loudness(
        integrated_lufs=float(meter["input_i"]),
        true_peak_dbtp=float(meter["input_tp"]),
        loudness_range_lu=float(meter["input_lra"]),
        threshold_lufs=float(meter["input_thresh"]),
        target_offset_lu=float(first["target_offset"]),
    )


def _option(value: float, bounds: tuple[float, float], unset: float | None = None) -> str:
    """A measurement as a loudnorm option: within its range, and never equal to its "not given" default.

    loudnorm takes measured_I=0, measured_LRA=0 and measured_thresh=-70 (its
    defaults) to mean "not measured" and then refuses linear mode, so a steady
    tone (range 0 LU) would be compressed; 0.01 away is the same measurement.
    """
    low, high = bounds
    value = round(min(max(value, low), high), 2)
    if unset is not None and value == unset:
        value = unset + 0.01 if unset < high else unset - 0.01
    return f"{value:.2f}"


def _second_pass(stream, measured: Loudness, options: LoudnessOptions):
    # Clamping only matters for a source louder than 0 LUFS (a full-scale square wave),
    # where the gain comes out a fraction of a dB short.
    return stream.filter(
        "loudnorm@level", **_targets(options),
        measured_I=_option(measured.integrated_lufs, _MEASURED_I, unset=0.0),
        measured_TP=_option(measured.true_peak_dbtp, _MEASURED_TP),
        measured_LRA=_option(measured.loudness_range_lu, _MEASURED_LRA, unset=0.0),
        measured_thresh=_option(measured.threshold_lufs, _MEASURED_THRESH, unset=-70.0),
        offset=_option(measured.target_offset_lu, _OFFSET),
        linear="true", print_format="json",
    )  # fmt: skip


# 24-bit FLAC: lossless for the packaging step, and without ffmpeg's ">24 bits is experimental" warning.
_FLAC_OUT = {"f": "flac", "ar": SAMPLE_RATE, "c:a": "flac", "sample_fmt": "s32", "bits_per_raw_sample": 24}


@task(name="normalize_loudness", cache_policy=NO_CACHE, persist_result=False)
def normalize_loudness(
    source: Path, dest_dir: Path, options: LoudnessOptions = LoudnessOptions(), info: MediaInfo | None = None
) -> StepRecord:
    """Level the first audio stream of `source` to EBU R128 and write `dest_dir/audio.normalized.flac`.

    Args:
        source: any file ffmpeg reads with an audio stream (WAV, FLAC, MP3, a
            video's soundtrack); a file without one is a `BadInputError`.
        dest_dir: folder the output is written to (a staging folder in a run).
        options: the recipe's `loudness` section: integrated_lufs (default
            -23, EBU R128 broadcast; -16 for the web), true_peak_dbtp (default
            -1), loudness_range_lu (default 7).

    Linear mode is asked for: one gain for the whole file, so the dynamics are
    untouched. loudnorm falls back to dynamic mode (a compressor and limiter)
    when that gain would push the true peak over its target or the source's
    range exceeds the target range; `normalization_type` records which ran.
    Silence (nothing above the -70 LUFS gate) is not amplified: it is copied
    through at 48 kHz, with `silent: true` and a note. The output is 24-bit FLAC
    at 48 kHz with the source's channel count; the measured loudness of the
    input and of the output are both recorded.
    """
    started = utc_now()
    measured_in = measure_loudness(source, targets=options, info=info)  # the input's faults surface here
    out = dest_dir / OUTPUT_NAME
    sound = ffmpeg_python.input(str(source))["a:0"]
    with atomic_path(out) as tmp:
        if measured_in.silent:
            # loudnorm refuses measured_I=-inf, and in one pass it would raise dither by 70 dB or more.
            run_ffmpeg(sound.output(str(tmp), **_FLAC_OUT), out, output=out, global_options=["-nostats"])
            normalization_type = "none"
        else:
            levelled = _second_pass(sound, measured_in, options).output(str(tmp), **_FLAC_OUT)
            proc = run_ffmpeg(levelled, out, output=out, global_options=["-nostats"])
            normalization_type = _loudnorm_report(proc.stderr, source, "loudnorm@level")["normalization_type"]
    measured_out = measure_loudness(out, targets=options)
    written = probe(out).audio

    params: dict[str, Any] = {
        **options.model_dump(mode="json", exclude={"enabled"}),
        "linear_requested": True,
        "normalization_type": normalization_type,  # "linear", "dynamic" (loudnorm's fallback), or "none"
        "silent": measured_in.silent,
        "input": measured_in.as_parameters(),
        "output": measured_out.as_parameters(),
        "sample_rate": written.sample_rate,
        "channels": written.channels,
        "audio_stream": 0,
    }
    if measured_in.silent:
        params["note"] = SILENT_NOTE
    return StepRecord.finished("normalize_loudness", ffmpeg_tool(), started, "algorithmicallyEnhanced", OUTPUT_NAME, params)
