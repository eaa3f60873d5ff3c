"""`assetline run` on audio: real speech in, transcript and subtitles out, each with provenance."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pysubs2
import pytest

from assetline.provenance import IPTC
from helpers import REPO, run_cli, tree_state

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it


@pytest.fixture(scope="module")
def audio_run(prefect_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    inputs = root / "in"
    inputs.mkdir()
    shutil.copy(REPO / "tests" / "data" / "arctic_a0007.wav", inputs / "arctic_a0007.wav")
    with wave.open(str(inputs / "silence.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000 * 3, np.int16).tobytes())
    before = tree_state(inputs)
    result = run_cli("run", str(inputs), "--out", str(root / "out"), api_url=prefect_api, env={"COLUMNS": "200"})
    return inputs, root / "out", before, result


def folder_of(out: Path, stem: str) -> Path:
    (found,) = [p for p in out.iterdir() if p.name.startswith(stem + "-")]
    return found


def test_audio_is_routed_by_content_and_every_output_has_a_sidecar(audio_run):
    inputs, out, before, result = audio_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 done, 0 up to date, 0 failed" in result.stdout
    for stem in ("arctic_a0007", "silence"):
        names = sorted(p.name for p in folder_of(out, stem).iterdir())
        assert names == sorted(  # text can't hold a C2PA manifest: each has its manifest store beside it
            f"{n}{s}" for n in ("transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml") for s in ("", ".c2pa", ".provenance.json")
        )
    assert tree_state(inputs) == before


def test_subtitles_carry_the_spoken_words(audio_run):
    _, out, _, _ = audio_run
    subs = pysubs2.load(str(folder_of(out, "arctic_a0007") / "subtitles.srt"))
    text = " ".join(e.plaintext for e in subs).lower()
    assert "superlative degree" in text
    assert all(len(line) <= 42 for e in subs for line in e.plaintext.splitlines())
    vtt = (folder_of(out, "arctic_a0007") / "subtitles.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "superlative" in vtt.lower()


def test_silence_gives_valid_empty_subtitles(audio_run):
    _, out, _, _ = audio_run
    folder = folder_of(out, "silence")
    assert json.loads((folder / "transcript.json").read_text())["segments"] == []
    assert (folder / "subtitles.vtt").read_text().strip() == "WEBVTT"


def test_subtitle_manifest_names_the_transcript_and_the_model(audio_run):
    _, out, _, _ = audio_run
    folder = folder_of(out, "arctic_a0007")
    m = json.loads((folder / "subtitles.srt.provenance.json").read_text())
    assert [s["name"] for s in m["steps"]] == ["normalize_loudness", "transcribe", "subtitles"]
    heard = next(s for s in m["steps"] if s["name"] == "transcribe")
    assert heard["model"]["name"] == "whisper-base"  # the default model
    loud = m["steps"][0]["parameters"]
    assert loud["silent"] is False and abs(loud["output"]["integrated_lufs"] - (-23.0)) <= 1.0
    assert {i["role"]: i["path"] for i in m["inputs"]}["intermediate"] == "transcript.json"
    assert m["ai_disclosure"]["digital_source_type"] == IPTC + "trainedAlgorithmicMedia"
    assert "whisper-base" in m["ai_disclosure"]["statement"]


def test_audio_outputs_verify_and_a_rerun_touches_nothing(audio_run, prefect_api):
    inputs, out, _, _ = audio_run
    assert run_cli("verify", str(out), api_url=None).returncode == 0
    state = tree_state(out)
    again = run_cli("run", str(inputs), "--out", str(out), api_url=prefect_api)
    assert "0 done, 2 up to date" in again.stdout
    assert tree_state(out) == state


@pytest.mark.parametrize("suffix, codec", [(".mp3", "libmp3lame"), (".m4a", "aac"), (".flac", "flac"), (".ogg", "libvorbis")])
def test_common_audio_formats_are_routed_as_audio_by_content(tmp_path, suffix, codec):
    from assetline.assets import identify
    from assetline.ffmpeg import run_ffmpeg

    encoded = tmp_path / f"speech{suffix}"
    run_ffmpeg(["-i", str(REPO / "tests" / "data" / "arctic_a0007.wav"), "-c:a", codec, str(encoded)], encoded)
    assert identify(encoded).kind == "audio"
    disguised = tmp_path / "speech.png"  # the extension never decides
    shutil.copy(encoded, disguised)
    assert identify(disguised).kind == "audio"
