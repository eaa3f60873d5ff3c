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


def _manifest(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".provenance.json").read_text())


def test_the_transcript_and_subtitles_go_out_before_the_picture_is_rendered(footage_run):
    """Two output groups, each whole: the words are signed and in place before the picture's first step starts."""
    _, out, _, result = footage_run
    folder = folder_of(out, "interview")
    words = [_manifest(folder / n) for n in ("transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml")]
    video = _manifest(folder / "video.mp4")
    first_picture_step = video["steps"][0]
    assert first_picture_step["name"] == "denoise"
    assert max(m["created_at"] for m in words) <= first_picture_step["started_at"] < video["created_at"]
    assert {m["version"] for m in words + [video]} == {1}  # one run, one version
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ interview.mp4"))
    times = result.stdout[result.stdout.index(row):].split("└")[0]
    assert "subtitles at" in times and "picture at" in times, result.stdout


def _copy_asset(footage_run, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The interview clip and its delivered outputs, copied to a fresh input folder and output root."""
    import shutil

    inputs, out, _, _ = footage_run
    (tmp_path / "in").mkdir()
    clip = tmp_path / "in" / "interview.mp4"
    shutil.copy2(inputs / "interview.mp4", clip)
    asset = tmp_path / "out" / folder_of(out, "interview").name
    shutil.copytree(folder_of(out, "interview"), asset)
    return clip, tmp_path / "out", asset


def test_a_run_cut_short_after_the_subtitles_makes_only_the_picture_and_keeps_one_version(footage_run, prefect_api, tmp_path):
    """The state a crash between the groups leaves: the words delivered, no picture. The next run renders the
    picture alone, joins it to the same version, and transcribes nothing again."""
    clip, out, asset = _copy_asset(footage_run, tmp_path)
    for path in (asset / "video.mp4", asset / "video.mp4.provenance.json"):
        path.unlink()
    words = {n: (asset / n).read_bytes() + (asset / (n + ".provenance.json")).read_bytes()
             for n in ("transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml")}  # fmt: skip
    result = run_cli("run", str(clip), "--out", str(out), api_url=prefect_api, env={"COLUMNS": "200"})
    assert result.returncode == 0 and "1 done" in result.stdout, result.stdout + result.stderr
    assert "picture at" in result.stdout and "subtitles at" not in result.stdout, result.stdout
    assert {n: (asset / n).read_bytes() + (asset / (n + ".provenance.json")).read_bytes() for n in words} == words
    video = _manifest(asset / "video.mp4")
    assert video["version"] == 1 and video.get("previous") is None
    assert {i["path"] for i in video["inputs"] if i["role"] == "intermediate"} == {"subtitles.srt"}
    assert video["ai_disclosure"]["models"] == ["whisper-base"]  # the delivered subtitles' model, from their manifest
    assert not (asset / ".versions").exists()
    with av.open(str(asset / "video.mp4")) as c:
        assert [s.type for s in c.streams if s.type == "subtitle"] == ["subtitle"]
    import c2pa

    with c2pa.Reader(str(asset / "video.mp4")) as reader:  # the delivered subtitles' own manifest rides along
        (component,) = [i for i in reader.get_active_manifest()["ingredients"] if i["relationship"] == "componentOf"]
    assert component["title"] == "subtitles.srt" and component["active_manifest"], component
    assert run_cli("verify", str(asset), api_url=None).returncode == 0


def test_a_recipe_change_delivers_both_groups_as_one_new_version(footage_run, prefect_api, tmp_path):
    """Delivered a group at a time, the outputs still make one version: the old set is archived once, whole."""
    clip, out, asset = _copy_asset(footage_run, tmp_path)
    old = {n: _manifest(asset / n)["output"]["sha256"] for n in ("video.mp4", "subtitles.srt", "transcript.json")}
    result = run_cli("run", str(clip), "--out", str(out), "--set", "video.subtitles.max_chars_per_line=30",
                     api_url=prefect_api, env={"COLUMNS": "200"})  # fmt: skip
    assert result.returncode == 0 and "1 done" in result.stdout, result.stdout + result.stderr
    assert sorted(p.name for p in (asset / ".versions").iterdir()) == ["v001"]
    for name, sha in old.items():
        now = _manifest(asset / name)
        assert now["version"] == 2
        assert now["previous"] == {"version": 1, "path": f".versions/v001/{name}", "sha256": sha}
        assert _manifest(asset / ".versions" / "v001" / name)["version"] == 1
    checked = run_cli("verify", str(asset), api_url=None)
    assert checked.returncode == 0 and "v2 <- v1" in checked.stdout, checked.stdout


def test_subtitles_a_reviewer_must_see_hold_the_picture_with_them_and_approval_delivers_both(footage_run, prefect_api, tmp_path):
    """The words group held for review is not delivered early: the picture, which carries them as soft
    tracks, is made and held with it, and one approval delivers the whole as one version."""
    inputs, _, _, _ = footage_run
    (tmp_path / "in").mkdir()
    clip = tmp_path / "in" / "interview.mp4"
    clip.write_bytes((inputs / "interview.mp4").read_bytes())
    out = tmp_path / "out"
    ran = run_cli("run", str(clip), "--out", str(out), '--set=video.transcribe.forbidden=["superlative"]',
                  api_url=prefect_api, env={"COLUMNS": "200"})  # fmt: skip
    assert ran.returncode == 0 and "1 awaiting review" in ran.stdout, ran.stdout + ran.stderr
    held = next((out / ".review").glob("interview-*"))
    assert {"transcript.json", "subtitles.srt", "video.mp4"} <= {p.name for p in held.iterdir()}
    assert not (out / held.name).exists()  # nothing of it delivered before the decision
    approved = run_cli("review", "approve", "interview.mp4", "--by", "Ana Editor", "--out", str(out), api_url=prefect_api)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    delivered = out / held.name
    for name in ("transcript.json", "subtitles.srt", "video.mp4"):
        m = _manifest(delivered / name)
        assert m["version"] == 1 and m["review"]["by"] == "Ana Editor"
    assert run_cli("verify", str(delivered), api_url=None).returncode == 0
