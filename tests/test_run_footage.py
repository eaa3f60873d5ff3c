"""`assetline run` on footage: real speech on a generated picture, and the footage bad-input cases."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from assetline.ffmpeg import run_ffmpeg
from helpers import REPO, SPEECH, make_clip, run_cli, tree_state

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it



@pytest.fixture(scope="module")
def footage_run(prefect_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    inputs = root / "in"
    inputs.mkdir()
    make_clip(inputs / "interview.mp4")
    make_clip(inputs / "mute.mp4", audio=None, seconds=1.0)
    good = inputs / "interview.mp4"
    (inputs / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (inputs / "notes.mp4").write_text("this is not a video\n")
    (inputs / "empty.mp4").write_bytes(b"")
    before = tree_state(inputs)
    result = run_cli("run", str(inputs), "--out", str(root / "out"), api_url=prefect_api, env={"COLUMNS": "200"})
    return inputs, root / "out", before, result


def folder_of(out: Path, stem: str) -> Path:
    (found,) = [p for p in out.iterdir() if p.name.startswith(stem + "-")]
    return found


def test_footage_run_completes_the_good_clips_and_fails_the_bad_ones(footage_run):
    _, _, _, result = footage_run
    assert result.returncode == 1
    assert "2 done, 0 up to date, 3 failed" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_video_mp4_has_upscaled_picture_normalised_audio_and_a_tagged_soft_subtitle_track(footage_run):
    _, out, _, _ = footage_run
    folder = folder_of(out, "interview")
    with av.open(str(folder / "video.mp4")) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (320, 180)
        assert v.codec_context.name == "h264"
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        (sub,) = [s for s in c.streams if s.type == "subtitle"]
        assert sub.codec_context.name == "mov_text"
        assert (sub.language or sub.metadata.get("language")) == "eng"
    srt = (folder / "subtitles.srt").read_text().lower()
    assert "superlative" in srt


def test_video_manifest_names_every_step_in_order(footage_run):
    _, out, _, _ = footage_run
    m = json.loads((folder_of(out, "interview") / "video.mp4.provenance.json").read_text())
    names = [s["name"] for s in m["steps"]]
    assert names[-1] == "package"
    for step in ("denoise", "upscale", "transcode", "normalize_loudness"):
        assert step in names
    # the subtitle track's lineage (transcript, model) is in subtitles.srt's own manifest, named as an input
    assert {i["path"] for i in m["inputs"] if i["role"] == "intermediate"} == {"subtitles.srt"}
    # captured picture and sound, plus subtitle text the speech model wrote: a composite, naming the model
    assert m["ai_disclosure"]["digital_source_type"].endswith("/compositeWithTrainedAlgorithmicMedia")
    assert m["ai_disclosure"]["models"] == ["whisper-base"]  # the default model
    loud = next(s for s in m["steps"] if s["name"] == "normalize_loudness")["parameters"]
    assert json.dumps(loud)  # measured input and output loudness are recorded
    assert run_cli("verify", str(out), api_url=None).returncode == 0


def test_a_clip_without_sound_is_processed_and_says_transcription_was_skipped(footage_run):
    _, out, _, result = footage_run
    folder = folder_of(out, "mute")
    assert sorted(p.name for p in folder.iterdir()) == ["video.mp4", "video.mp4.provenance.json"]
    assert "transcription and subtitles skipped" in result.stdout


@pytest.mark.parametrize("name", ["truncated.mp4", "notes.mp4", "empty.mp4"])
def test_bad_footage_fails_with_one_line_and_leaves_nothing(footage_run, name):
    inputs, out, before, result = footage_run
    lines = [line for line in (result.stdout + result.stderr).splitlines() if name in line and "failed" in line]
    assert lines, result.stdout + result.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(Path(name).stem + "-")]
    assert tree_state(inputs) == before


def _picture_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in c.demux(stream) if p.pts is not None)


def test_variable_frame_rate_footage_keeps_its_frame_times_and_subtitles_stay_on_the_speech(prefect_api, tmp_path):
    """A VFR clip (30 fps, then 10 fps) with real speech: every frame keeps its time, so cues stay in sync."""
    clip = tmp_path / "vfr.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30:duration=4.2", "-i", str(SPEECH),
                "-vf", r"select='lt(n\,40)+not(mod(n\,3))'", "-fps_mode", "vfr", "-map", "0:v", "-map", "1:a",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "4.2", str(clip)], clip)  # fmt: skip
    source_times = _picture_times(clip)
    gaps = {round(b - a, 3) for a, b in zip(source_times, source_times[1:])}
    assert len(gaps) > 1  # really variable
    result = run_cli("run", str(clip), "--out", str(tmp_path / "out"), api_url=prefect_api)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = folder_of(tmp_path / "out", "vfr")
    assert _picture_times(folder / "video.mp4") == pytest.approx(source_times, abs=1e-3)
    transcript = json.loads((folder / "transcript.json").read_text())
    first_word = transcript["segments"][0]["words"][0]["start"]
    import pysubs2

    cue = pysubs2.load(str(folder / "subtitles.srt"))[0]
    assert cue.start / 1000 >= first_word - 1e-3  # never shown before its speech
    assert cue.start / 1000 - first_word < 0.1
