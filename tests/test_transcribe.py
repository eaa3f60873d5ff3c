"""Transcription on real human speech with the real tiny.en model: accurate words, sane times, honest records.

The speech is 28.7 s of LibriVox and CMU ARCTIC clips that PyPI packages ship
(tests/data/README.md), joined with short pauses into one file.
"""

from __future__ import annotations

import json
import subprocess
import time
import wave
from itertools import pairwise
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from assetline import models
from assetline.config import TranscribeOptions
from assetline.errors import BadInputError, DeviceError, RecipeError
from assetline.storage import sha256_file
from assetline.tasks.transcribe import OUTPUT_NAME, transcribe, whisper_model
from assetline.transcript import Transcript
from helpers.speech import word_error_rate

# These tests are about tiny.en, the fast English model (the multilingual default has tests/test_languages.py).
TINY = TranscribeOptions(model="whisper-tiny.en")

DATA = Path(__file__).parent / "data"
RATE = 16_000
PAUSE_S = 0.5


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as src:
        assert (src.getframerate(), src.getnchannels(), src.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


def read_transcript(folder: Path) -> Transcript:
    return Transcript.model_validate_json((folder / OUTPUT_NAME).read_text(encoding="utf-8"))


def heard(transcript: Transcript) -> str:
    return " ".join(seg["text"] for seg in transcript.segments)


def clips() -> list[tuple[Path, str]]:
    rows = (line.split("\t") for line in (DATA / "transcripts.tsv").read_text(encoding="utf-8").splitlines() if line)
    return [(DATA / name, text) for name, text in rows]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, str, float]:
    """Every clip joined into one 16 kHz WAV with half-second pauses: (path, transcript, seconds)."""
    pause = np.zeros(int(PAUSE_S * RATE), dtype="<i2")
    parts, texts = [], []
    for path, text in clips():
        parts += [read_wav(path), pause]
        texts.append(text)
    samples = np.concatenate(parts)
    path = write_wav(tmp_path_factory.mktemp("speech") / "speech.wav", samples)
    return path, " ".join(texts), len(samples) / RATE


@pytest.fixture(scope="module")
def transcribed(speech, tmp_path_factory):
    """The default step run once on the joined speech: (record, transcript, seconds of compute)."""
    path, _, _ = speech
    whisper_model("whisper-tiny.en", "cpu", "int8", 0)  # load outside the timing
    out = tmp_path_factory.mktemp("out")
    started = time.perf_counter()
    record = transcribe.fn(path, out, TINY)
    elapsed = time.perf_counter() - started
    return record, read_transcript(out), elapsed


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("the cat sat", "The cat sat.") == 0.0
    assert word_error_rate("mister smith is ill disposed", "Mr. Smith is ill-disposed!") == 0.0
    assert word_error_rate("a b c d", "a x c d") == 0.25  # one substitution
    assert word_error_rate("a b c d", "a b c d e") == 0.25  # one insertion
    assert word_error_rate("a b c d", "a c d") == 0.25  # one deletion
    assert word_error_rate("a b", "") == 1.0


def test_a_segment_the_model_neither_hears_as_speech_nor_believes_is_a_hallucination():
    from assetline.tasks.transcribe import _hallucinated

    def segment(no_speech: float, *probabilities: float) -> dict:
        return {"no_speech_prob": no_speech, "words": [{"probability": p} for p in probabilities]}

    assert _hallucinated(segment(0.87, 0.05, 0.1, 0.09))  # the English prompt's repeated last sentence
    assert not _hallucinated(segment(0.87, 0.6, 0.7))  # quiet, but words it believes
    assert not _hallucinated(segment(0.2, 0.05, 0.1))  # speech it doubts: kept, for review to flag
    assert not _hallucinated(segment(0.9))  # no words at all: nothing to drop


def test_real_speech_is_transcribed_with_word_error_rate_at_most_0_15(speech, transcribed):
    _, reference, seconds = speech
    _, transcript, elapsed = transcribed
    speaking = sum(len(read_wav(p)) / RATE for p, _ in clips())  # the pauses left out
    hypothesis = heard(transcript)
    wer = word_error_rate(reference, hypothesis)
    print(f"\nWER {wer:.3f} on {speaking:.1f} s of speech ({seconds:.1f} s file), {seconds / elapsed:.1f}x real time")
    print(f"heard: {hypothesis.strip()}")
    assert speaking >= 20
    assert transcript.duration == pytest.approx(seconds, abs=0.01)
    assert wer <= 0.15


def test_words_are_timed_in_order_within_the_file(transcribed):
    _, transcript, _ = transcribed
    words = transcript.words()
    assert len(words) >= 60
    for word in words:
        assert 0 <= word.start < word.end <= transcript.duration, word
        assert 0 <= word.probability <= 1
    assert all(a.start <= b.start and a.end <= b.end for a, b in pairwise(words))
    for seg in transcript.segments:
        assert seg["start"] <= seg["words"][0]["start"] and seg["words"][-1]["end"] <= seg["end"] + 0.01
    # The last clip (a0007, "... superlative degree") starts after the LibriVox ones and their pauses.
    superlative = next(w for w in words if "superlative" in w.text.lower())
    librivox_seconds = sum(len(read_wav(p)) / RATE + PAUSE_S for p, _ in clips()[:-1])
    assert librivox_seconds < superlative.start < transcript.duration


def test_transcript_json_records_model_sha256_and_the_options_actually_used(transcribed):
    _, transcript, _ = transcribed
    spec = models.get_spec("whisper-tiny.en")
    assert transcript.schema_ == "assetline/transcript@1"
    assert transcript.model.name == "whisper-tiny.en"
    assert transcript.model.sha256 == spec.sha256 == sha256_file(models.require(spec.name) / "model.bin")
    assert transcript.language == "en"
    options = transcript.options
    assert options["model"] == "whisper-tiny.en" and options["vad"] is True
    assert options["device_used"] == "cpu" and options["compute_type_used"].startswith("int8")
    assert options["cpu_threads_used"] >= 1
    used = options["transcription_options"]  # faster-whisper's own record of what it ran with
    assert used["beam_size"] == 5 and used["word_timestamps"] is True
    assert used["temperatures"][0] == 0.0
    assert options["vad_options"]["threshold"] == 0.5
    assert options["vad_options"]["max_speech_duration_s"] is None  # unbounded: JSON has no infinity


def test_step_record_names_tool_model_and_what_was_used(transcribed):
    record, transcript, _ = transcribed
    assert record.name == "transcribe" and record.output == OUTPUT_NAME
    assert record.tool.name == "faster-whisper" and record.tool.version[0].isdigit()
    assert record.tool.runtime.startswith("ctranslate2 ")
    assert record.model.name == "whisper-tiny.en"
    assert record.model.sha256 == models.get_spec("whisper-tiny.en").sha256
    assert record.digital_source_type == "trainedAlgorithmicMedia"
    params = record.parameters
    assert params["language_used"] == "en" and params["device_used"] == "cpu"
    assert params["segments"] == len(transcript.segments) and params["words"] == len(transcript.words())
    assert params["duration"] == transcript.duration
    if "hallucinations_dropped" in params:  # what was left out is said, with the rule
        assert params["hallucinations_dropped"]["rule"].startswith("no_speech_prob > ")
    assert len(json.dumps(params)) < 1000  # compact: the full option record lives in transcript.json


def test_pure_silence_gives_a_valid_transcript_with_no_segments(tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(5 * RATE, dtype="<i2"))
    record = transcribe.fn(silence, tmp_path, TINY)
    transcript = Transcript.model_validate(json.loads((tmp_path / OUTPUT_NAME).read_text(encoding="utf-8")))
    assert transcript.segments == [] and transcript.words() == []
    assert transcript.duration == pytest.approx(5.0)
    assert record.parameters["segments"] == 0 and record.parameters["duration_after_vad"] == 0


def test_speech_inside_a_compressed_container_is_transcribed(tmp_path):
    source, reference = clips()[-1]
    m4a = tmp_path / "clip.m4a"
    ffmpeg("-i", str(source), "-c:a", "aac", "-b:a", "64k", str(m4a))
    transcribe.fn(m4a, tmp_path, TINY)
    transcript = read_transcript(tmp_path)
    assert word_error_rate(reference, heard(transcript)) <= 0.15


def test_whisper_model_loads_once_per_process(tmp_path):
    first = whisper_model("whisper-tiny.en", "cpu", "int8", 0)
    assert whisper_model("whisper-tiny.en", "cpu", "int8", 0) is first
    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, dtype="<i2"))
    transcribe.fn(silence, tmp_path, TINY)
    transcribe.fn(silence, tmp_path, TINY)
    loaded = [k for k in models.sessions.items if k[:2] == ("whisper", "whisper-tiny.en") and k[3:5] == ("cpu", "int8")
              and k[-1] == models.threads_per_asset()]  # one per thread count: an earlier batch may have left another
    assert len(loaded) == 1 and models.sessions.items[loaded[0]] is first


def test_auto_device_uses_cuda_only_when_ctranslate2_sees_it(tmp_path):
    import ctranslate2

    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, dtype="<i2"))
    record = transcribe.fn(silence, tmp_path, TranscribeOptions(model="whisper-tiny.en", device="auto"))
    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert record.parameters["device"] == "auto" and record.parameters["device_used"] == expected


def test_cuda_without_a_cuda_device_is_a_clear_error(tmp_path):
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, dtype="<i2"))
    with pytest.raises(DeviceError, match="no CUDA device") as err:
        transcribe.fn(silence, tmp_path, TranscribeOptions(model="whisper-tiny.en", device="cuda"))
    assert "device=cuda" in str(err.value)
    assert not (tmp_path / OUTPUT_NAME).exists()


def test_a_compute_type_the_device_lacks_is_an_error_not_a_silent_conversion():
    import ctranslate2

    if "float16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this CPU computes in float16")
    with pytest.raises(DeviceError, match="float16"):
        whisper_model("whisper-tiny.en", "cpu", "float16", 0)


def test_an_english_only_model_refuses_another_language(tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, dtype="<i2"))
    with pytest.raises(RecipeError, match="English-only") as err:
        transcribe.fn(silence, tmp_path, TranscribeOptions(model="whisper-tiny.en", language="de"))
    assert "whisper-tiny.en" in str(err.value) and "'de'" in str(err.value)
    assert not (tmp_path / OUTPUT_NAME).exists()


def test_an_unknown_language_code_is_a_recipe_error(tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, dtype="<i2"))
    with pytest.raises(RecipeError, match="not a language Whisper knows"):
        transcribe.fn(silence, tmp_path, TranscribeOptions(model="whisper-tiny.en", language="english"))


def test_no_language_on_an_english_only_model_means_english(tmp_path):
    source, reference = clips()[-1]
    record = transcribe.fn(source, tmp_path, TranscribeOptions(model="whisper-tiny.en", language=None))
    transcript = read_transcript(tmp_path)
    assert transcript.language == "en" and record.parameters["language_used"] == "en"
    assert record.parameters["language"] is None  # the recipe's choice, kept apart from what was used
    assert word_error_rate(reference, heard(transcript)) <= 0.15
    # English-only: nothing was detected, and the record says so (no probability is made up)
    assert transcript.flags == ["language_assumed"] and transcript.language_probability is None
    assert "English-only" in record.parameters["language_note"]
    assert transcript.translation is None


def test_a_file_without_sound_is_bad_input_with_a_clear_message(tmp_path):
    video = tmp_path / "silent-film.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "1", "-pix_fmt", "yuv420p", str(video))
    with pytest.raises(BadInputError, match="no audio stream") as err:
        transcribe.fn(video, tmp_path, TINY)
    assert str(video) in str(err.value)
    text = tmp_path / "notes.wav"
    text.write_text("not sound at all")
    with pytest.raises(BadInputError):
        transcribe.fn(text, tmp_path, TINY)
    assert not (tmp_path / OUTPUT_NAME).exists()


def test_another_registered_whisper_folder_is_chosen_by_name(tmp_path, monkeypatch):
    """A user's CTranslate2 Whisper, added under its own name, is what the recipe's `model` loads."""
    tiny = models.get_spec("whisper-tiny.en")
    tiny_model = whisper_model(tiny.name, "cpu", "int8", 0)
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for f in tiny.files:
        (folder / f.name).symlink_to(models.require(tiny.name) / f.name)
    monkeypatch.setenv("ASSETLINE_USER_MODELS", str(tmp_path / "user-models.yaml"))
    try:
        models.add_user_model("my-whisper", "whisper", folder)
        source, reference = clips()[-1]
        record = transcribe.fn(source, tmp_path, TranscribeOptions(model="my-whisper"))
        transcript = read_transcript(tmp_path)
        assert transcript.model.name == record.model.name == "my-whisper"
        assert whisper_model("my-whisper", "cpu", "int8", 0) is not tiny_model
        assert word_error_rate(reference, heard(transcript)) <= 0.15
    finally:
        models.REGISTRY.pop("my-whisper", None)


def test_long_audio_is_transcribed_a_window_at_a_time_with_times_kept(speech, tmp_path):
    """Windows of 10 s (cut at quiet moments) give the same words at the same times as one pass."""
    path, reference, seconds = speech
    record = transcribe.fn(path, tmp_path, TranscribeOptions(model="whisper-tiny.en", window_seconds=10))
    transcript = read_transcript(tmp_path)
    assert word_error_rate(reference, heard(transcript)) <= 0.15
    words = transcript.words()
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert words[-1].end <= seconds + 0.05
    assert abs(transcript.duration - seconds) < 0.05
    assert [s["id"] for s in transcript.segments] == list(range(1, len(transcript.segments) + 1))
    assert record.parameters["window_seconds"] == 10


def test_audio_windows_cut_in_the_quiet_and_lose_no_sample(speech):
    from assetline.audio_windows import SAMPLE_RATE, audio_windows

    path, _, seconds = speech
    windows = list(audio_windows(path, 10))
    assert len(windows) >= 3
    assert sum(len(w) for _, w in windows) == pytest.approx(seconds * SAMPLE_RATE, abs=SAMPLE_RATE * 0.05)
    for (offset, samples), (next_offset, _) in zip(windows, windows[1:]):
        assert next_offset == pytest.approx(offset + len(samples) / SAMPLE_RATE)
        assert len(samples) <= (10 + 5) * SAMPLE_RATE  # one window plus its look-ahead, never the whole file
