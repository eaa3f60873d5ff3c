"""Loudness normalisation (EBU R128, two-pass loudnorm) on real speech, checked by an independent meter.

The speech is the CMU ARCTIC clip from tests/data, made 15 dB too quiet first.
Levels are checked with ffmpeg's `ebur128` filter, a separate meter from the
loudnorm code under test.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import av
import numpy as np
import pytest

from assetline.config import LoudnessOptions
from assetline.errors import BadInputError
from assetline.ffmpeg import run_ffmpeg
from assetline.media import probe
from assetline.tasks.loudness import OUTPUT_NAME, SILENT_NOTE, measure_loudness, normalize_loudness

DATA = Path(__file__).parent / "data"
SPEECH = DATA / "arctic_a0007.wav"

normalize = normalize_loudness.fn  # the plain step, without Prefect


def ffmpeg_make(dest: Path, *args: str) -> Path:
    run_ffmpeg([*args, str(dest)], dest)
    return dest


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) from ffmpeg's ebur128 meter."""
    stderr = run_ffmpeg(["-nostats", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"], path).stderr
    summary = stderr[stderr.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(\S+) LUFS", summary).group(1)
    peak = re.search(r"Peak:\s+(\S+) dBFS", summary).group(1)
    return float(integrated), float(peak)


def samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().ravel() for frame in container.decode(audio=0)])


@pytest.fixture(scope="module")
def quiet_speech(tmp_path_factory) -> Path:
    """Real speech at the wrong level: the ARCTIC clip 15 dB down (about -37 LUFS)."""
    folder = tmp_path_factory.mktemp("quiet")
    return ffmpeg_make(folder / "quiet.wav", "-i", str(SPEECH), "-af", "volume=-15dB")


def normalised(tmp_path_factory, source: Path, options: LoudnessOptions):
    dest = tmp_path_factory.mktemp("normalised")
    record = normalize(source, dest, options)
    return record, dest / OUTPUT_NAME


@pytest.fixture(scope="module")
def broadcast(tmp_path_factory, quiet_speech):
    return normalised(tmp_path_factory, quiet_speech, LoudnessOptions())


@pytest.fixture(scope="module")
def web(tmp_path_factory, quiet_speech):
    return normalised(tmp_path_factory, quiet_speech, LoudnessOptions(integrated_lufs=-16))


def test_quiet_speech_is_normalised_to_minus_23_lufs_within_1_lu(broadcast):
    _, out = broadcast
    integrated, _ = ebur128(out)
    assert integrated == pytest.approx(-23.0, abs=1.0)


def test_normalised_speech_true_peak_stays_under_minus_1_dbtp(broadcast, web):
    for _, out in (broadcast, web):
        _, peak = ebur128(out)
        assert peak <= -1.0 + 0.5


def test_web_target_of_minus_16_lufs_is_met_within_1_lu(web):
    record, out = web
    integrated, _ = ebur128(out)
    assert integrated == pytest.approx(-16.0, abs=1.0)
    assert record.parameters["integrated_lufs"] == -16.0


def test_provenance_records_targets_and_the_measured_input_and_output_loudness(broadcast, quiet_speech):
    record, out = broadcast
    p = record.parameters
    assert (p["integrated_lufs"], p["true_peak_dbtp"], p["loudness_range_lu"]) == (-23.0, -1.0, 7.0)
    keys = {"integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "threshold_lufs", "target_offset_lu"}
    assert set(p["input"]) == keys and set(p["output"]) == keys
    # ebur128 prints one decimal; loudnorm's usual first pass would be 0.75 LU off on this clip.
    source_integrated, source_peak = ebur128(quiet_speech)
    assert p["input"]["integrated_lufs"] == pytest.approx(source_integrated, abs=0.2)
    assert p["input"]["true_peak_dbtp"] == pytest.approx(source_peak, abs=0.2)
    output_integrated, output_peak = ebur128(out)
    assert p["output"]["integrated_lufs"] == pytest.approx(output_integrated, abs=0.2)
    assert p["output"]["true_peak_dbtp"] == pytest.approx(output_peak, abs=0.2)
    assert p["output"]["integrated_lufs"] - p["input"]["integrated_lufs"] == pytest.approx(14.0, abs=1.5)
    assert p["sample_rate"] == 48_000 and p["silent"] is False
    assert record.name == "normalize_loudness" and record.output == OUTPUT_NAME
    assert record.tool.name == "ffmpeg" and record.tool.version not in ("", "unknown")
    assert record.model is None and record.digital_source_type == "algorithmicallyEnhanced"


def test_quiet_clean_speech_gets_one_gain_in_linear_mode(broadcast):
    record, _ = broadcast
    assert record.parameters["linear_requested"] is True
    assert record.parameters["normalization_type"] == "linear"


def test_a_gain_that_would_overshoot_the_true_peak_is_recorded_as_loudnorms_dynamic_fallback(web):
    # -16 LUFS needs about +21 dB: the speech's peaks would reach +2.7 dBTP in linear mode.
    record, _ = web
    assert record.parameters["normalization_type"] == "dynamic"


def test_a_steady_tone_with_zero_loudness_range_still_gets_linear_mode(tmp_path):
    # loudnorm reads measured_LRA=0 as "not measured"; the step must not let that force dynamic mode.
    tone = ffmpeg_make(tmp_path / "tone.wav", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=5",
                       "-af", "volume=-30dB")  # fmt: skip
    record = normalize(tone, tmp_path / "out", LoudnessOptions())
    assert record.parameters["input"]["loudness_range_lu"] == 0.0
    assert record.parameters["normalization_type"] == "linear"
    assert ebur128(tmp_path / "out" / OUTPUT_NAME)[0] == pytest.approx(-23.0, abs=1.0)


def test_digital_silence_passes_through_unamplified_with_a_note(tmp_path):
    silence = ffmpeg_make(tmp_path / "silence.wav", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "3")
    record = normalize(silence, tmp_path, LoudnessOptions())
    out = tmp_path / OUTPUT_NAME
    assert out.is_file()
    assert not np.any(samples(out))
    p = record.parameters
    assert p["silent"] is True and p["note"] == SILENT_NOTE and p["normalization_type"] == "none"
    assert p["input"]["integrated_lufs"] is None and p["output"]["integrated_lufs"] is None
    assert p["sample_rate"] == 48_000 and p["channels"] == 2


def test_dither_below_the_gate_is_not_raised_towards_the_target(tmp_path):
    # Noise near -80 dBFS measures -inf LUFS; one-pass loudnorm would lift it by 70 dB or more.
    noise = "anoisesrc=amplitude=0.0001:sample_rate=48000:seed=7"
    dither = ffmpeg_make(tmp_path / "dither.wav", "-f", "lavfi", "-i", noise, "-t", "3")
    record = normalize(dither, tmp_path, LoudnessOptions())
    assert record.parameters["silent"] is True
    peak_in = np.abs(samples(dither)).max() / 32768
    peak_out = np.abs(samples(tmp_path / OUTPUT_NAME)).max() / 2**31
    assert 20 * math.log10(peak_out) == pytest.approx(20 * math.log10(peak_in), abs=1.0)


def test_a_video_without_sound_is_bad_input_with_no_audio_stream(tmp_path):
    video = ffmpeg_make(tmp_path / "picture-only.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1")
    with pytest.raises(BadInputError, match="no audio stream") as caught:
        normalize(video, tmp_path / "out", LoudnessOptions())
    assert "picture-only.mp4" in str(caught.value)
    with pytest.raises(BadInputError, match="no audio stream"):
        measure_loudness(video)


def test_stereo_input_stays_stereo_with_its_channels_apart(tmp_path, quiet_speech):
    # Left is the speech, right the speech 6 dB down: a mix-down would make them equal.
    stereo = ffmpeg_make(tmp_path / "stereo.wav", "-i", str(quiet_speech), "-af", "pan=stereo|c0=c0|c1=0.5*c0")
    record = normalize(stereo, tmp_path, LoudnessOptions())
    out = tmp_path / OUTPUT_NAME
    assert probe(out).audio.channels == 2 and record.parameters["channels"] == 2
    with av.open(str(out)) as container:
        planes = np.concatenate([f.to_ndarray().reshape(-1, 2) if f.format.is_packed else f.to_ndarray().T
                                 for f in container.decode(audio=0)])  # fmt: skip
    left, right = np.abs(planes).max(axis=0)
    assert right / left == pytest.approx(0.5, rel=0.1)


def test_output_is_48khz_24bit_flac(broadcast):
    _, out = broadcast
    info = probe(out)
    assert (info.container, info.audio.codec, info.audio.sample_rate) == ("flac", "flac", 48_000)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].format.name == "s32"
    assert info.duration == pytest.approx(4.0, abs=0.05)
