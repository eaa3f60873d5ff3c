"""Packaging: video.mp4 holds the picture untouched, AAC sound and a tagged soft subtitle track; burn-in draws text.

Media are made here with ffmpeg (a black 320x180 picture, a sine tone) and the
subtitles with the subtitles step's own writer. Burn-in tests run ffmpeg with a
font configuration that holds no fonts at all, as on a bare server: the text
they find in the frames can only come from the font assetline ships.
"""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest

from assetline.config import EncodeOptions, PackageOptions
from assetline.errors import AssetlineError, BadInputError
from assetline.ffmpeg import ffmpeg_python, run_ffmpeg
from assetline.storage import sha256_file
from assetline.tasks.package import (
    BURNED_NAME,
    FONT_FILE,
    FONTS_DIR,
    OUTPUT_NAME,
    force_style,
    SubtitleTrack,
    package,
)
from assetline.captions import SubtitleCue, write_subtitles
from assetline.tasks.subtitles import SRT_NAME, VTT_NAME

# The cues here are written by hand to test muxing and drawing (one is hostile on purpose), not made by
# the cue planner: the suite's broadcast-rule check of subtitle files does not apply to them.
pytestmark = pytest.mark.unchecked_subtitles

SIZE = (320, 180)
FPS = 25
SECONDS = 4.0
FAST = EncodeOptions(preset="ultrafast")
BURN = PackageOptions(burn_in=True)

# Two cues; the second carries an ASS positioning code as a speech model might write it.
CUES = (
    SubtitleCue(1.0, 2.0, ("The quick brown fox jumps over the lazy dog",)),
    SubtitleCue(2.5, 3.5, (r"{\an8}Stays at the bottom,", "drawn as plain text")),
)
DURING_FIRST_CUE, DURING_SECOND_CUE, BEFORE_ANY_CUE = 1.5, 3.0, 0.5
BRIGHT = 128  # luma: the picture is black (16), the text white
MANY = 60  # bright pixels a line of text makes at this size, with a wide margin


def make_picture(path: Path, with_audio: bool = False, seconds: float = SECONDS) -> Path:
    """A black H.264 picture (the upscale step's kind of output), optionally with AAC sound."""
    inputs = ["-f", "lavfi", "-i", f"color=c=black:size={SIZE[0]}x{SIZE[1]}:rate={FPS}:duration={seconds}"]
    if with_audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=44100:duration={seconds}"]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    codecs += ["-c:a", "aac"] if with_audio else []
    run_ffmpeg([*inputs, *codecs, str(path)], path)
    return path


def make_audio(path: Path, seconds: float = SECONDS, sample_rate: int = 48_000) -> Path:
    """A tone as FLAC, the loudness step's kind of output."""
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}:duration={seconds}",
                "-c:a", "flac", str(path)], path)  # fmt: skip
    return path


def make_srt(folder: Path, cues=CUES) -> Path:
    write_subtitles(cues, folder / SRT_NAME, folder / VTT_NAME)
    return folder / SRT_NAME


@pytest.fixture
def no_system_fonts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg's fontconfig sees no font folder: only fonts handed to libass can draw."""
    conf = tmp_path / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
        f"<fontconfig><cachedir>{tmp_path / 'fontconfig-cache'}</cachedir></fontconfig>\n"
    )
    monkeypatch.setenv("FONTCONFIG_FILE", str(conf))


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "stage"
    folder.mkdir()
    return {
        "picture": make_picture(folder / "picture.mp4"),
        "audio": make_audio(folder / "audio.normalized.flac", sample_rate=44_100),
        "srt": make_srt(folder),
        "dest": folder,
    }


def streams(path: Path) -> dict[str, list]:
    """Stream facts by type: (codec, sample rate or language, ...) as PyAV reads them."""
    with av.open(str(path)) as container:
        found: dict[str, list] = {}
        for s in container.streams:
            facts = {"codec": s.codec_context.name, "language": s.metadata.get("language"),
                     "forced": bool(s.disposition & av.stream.Disposition.forced)}  # fmt: skip
            if s.type == "audio":
                facts["sample_rate"] = s.codec_context.sample_rate
                facts["duration"] = float(s.duration * s.time_base) if s.duration else None
            if s.type == "video":
                facts["frames"] = sum(1 for packet in container.demux(s) if packet.size)
                container.seek(0)
            found.setdefault(s.type, []).append(facts)
        return found


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """Luma of the first frame shown at or after `seconds`."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time >= seconds:
                return frame.to_ndarray(format="gray")
    raise AssertionError(f"{path.name} has no frame at {seconds} s")


def bright_rows(luma: np.ndarray) -> np.ndarray:
    return np.nonzero((luma > BRIGHT).any(axis=1))[0]


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types, in file order."""
    boxes = []
    with open(path, "rb") as fh:
        while len(header := fh.read(8)) == 8:
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 0:
                break
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0] - 8
            fh.seek(size - 8, 1)
    return boxes


def test_video_mp4_copies_the_picture_and_adds_aac_sound_and_a_language_tagged_subtitle_track(media):
    records = package.fn(media["picture"], media["dest"], media["audio"], media["srt"],
                         PackageOptions(subtitle_language="fra"), FAST)  # fmt: skip
    out = media["dest"] / OUTPUT_NAME
    found = streams(out)
    assert sorted(found) == ["audio", "subtitle", "video"]
    assert [v["codec"] for v in found["video"]] == ["h264"]
    assert video_packets(out) == video_packets(media["picture"])  # copied: every frame, bit for bit
    assert [(a["codec"], a["sample_rate"]) for a in found["audio"]] == [("aac", 48_000)]
    assert [(s["codec"], s["language"]) for s in found["subtitle"]] == [("mov_text", "fra")]

    [record] = records
    assert (record.name, record.output, record.tool.name) == ("package", OUTPUT_NAME, "ffmpeg")
    assert record.tool.version and record.tool.version != "unknown"
    params = record.parameters
    assert params["streams"] == ["video", "audio", "subtitles"]
    assert params["video"]["action"] == "copy"
    assert params["audio"] == {"source": "audio.normalized.flac", "codec": "aac", "bitrate": "192k",
                               "sample_rate": 48_000, "action": "encode"}  # fmt: skip
    assert params["subtitles"] == [{"codec": "mov_text", "language": "fra", "cues": 2, "source": SRT_NAME,
                                    "default": True, "forced": False}]  # fmt: skip
    assert params["faststart"] is True
    # The track's words were written by a speech model: the file is a composite.
    assert record.digital_source_type == "compositeWithTrainedAlgorithmicMedia"


def test_soft_subtitle_text_and_timing_round_trip(media, tmp_path):
    package.fn(media["picture"], media["dest"], media["audio"], media["srt"], PackageOptions(), FAST)
    extracted = tmp_path / "extracted.srt"
    run_ffmpeg(["-i", str(media["dest"] / OUTPUT_NAME), "-map", "0:s:0", "-f", "srt", str(extracted)], extracted)
    written = pysubs2.load(str(media["srt"]), format_="srt")
    read_back = pysubs2.load(str(extracted), format_="srt")
    assert [(e.start, e.end, e.text) for e in read_back] == [(e.start, e.end, e.text) for e in written]
    assert read_back[1].plaintext == "(/an8)Stays at the bottom,\ndrawn as plain text"


def test_outputs_are_fast_start(media):
    package.fn(media["picture"], media["dest"], media["audio"], media["srt"], BURN, FAST)
    for name in (OUTPUT_NAME, BURNED_NAME):
        boxes = top_level_boxes(media["dest"] / name)
        assert boxes.index("moov") < boxes.index("mdat"), (name, boxes)


def test_sound_is_never_cut_to_the_picture(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4", seconds=2.0)
    audio = make_audio(tmp_path / "audio.flac", seconds=3.0)
    package.fn(picture, tmp_path, audio, make_srt(tmp_path), BURN, FAST)
    for name in (OUTPUT_NAME, BURNED_NAME):
        [sound] = streams(tmp_path / name)["audio"]
        assert sound["duration"] == pytest.approx(3.0, abs=0.05), name


def test_burn_in_draws_text_with_the_shipped_font_where_no_system_font_exists(media, no_system_fonts):
    records = package.fn(media["picture"], media["dest"], media["audio"], media["srt"], BURN, FAST)
    burned = media["dest"] / BURNED_NAME
    during = frame_at(burned, DURING_FIRST_CUE)
    assert (during > BRIGHT).sum() > MANY
    assert bright_rows(during).min() > SIZE[1] * 2 // 3  # in the lower third
    assert (frame_at(burned, BEFORE_ANY_CUE) > BRIGHT).sum() == 0

    found = streams(burned)
    assert [v["frames"] for v in found["video"]] == [int(SECONDS * FPS)]  # re-encoded, no frame lost
    assert [(a["codec"], a["sample_rate"]) for a in found["audio"]] == [("aac", 48_000)]
    assert "subtitle" not in found  # the text is in the picture

    package_record, burn_record = records
    assert (package_record.output, burn_record.name, burn_record.output) == (OUTPUT_NAME, "burn_in", BURNED_NAME)
    drawn = burn_record.parameters["subtitles"]
    assert drawn["cues"] == 2
    assert drawn["font"] == {"name": "DejaVu Sans", "file": FONT_FILE, "sha256": sha256_file(FONTS_DIR / FONT_FILE)}
    assert burn_record.parameters["video"]["preset"] == "ultrafast"
    assert burn_record.digital_source_type == "compositeWithTrainedAlgorithmicMedia"


def test_without_the_shipped_font_the_same_filter_draws_nothing(media, no_system_fonts, tmp_path):
    """The control for the test above: it would catch a burn-in that silently lost its font."""
    picture = ffmpeg_python.input(str(media["picture"]))["v:0"]
    fontless = picture.filter("subtitles", filename=str(media["srt"]), force_style=force_style())  # no fontsdir
    out = tmp_path / "fontless.mp4"
    run_ffmpeg(fontless.output(str(out), **{"c:v": "libx264", "preset": "ultrafast"}), out)
    assert (frame_at(out, DURING_FIRST_CUE) > BRIGHT).sum() == 0


def test_an_override_code_in_a_cue_is_drawn_as_text_at_the_bottom(media, no_system_fonts):
    package.fn(media["picture"], media["dest"], None, media["srt"], BURN, FAST)
    luma = frame_at(media["dest"] / BURNED_NAME, DURING_SECOND_CUE)
    rows = bright_rows(luma)
    assert (luma > BRIGHT).sum() > 2 * MANY  # two lines, the code's characters among them
    assert rows.min() > SIZE[1] // 2  # {\an8} would have put it at the top


def test_hostile_folder_names_neither_break_nor_inject_into_the_filter_graph(tmp_path, no_system_fonts):
    folder = tmp_path / "take 1: it's [final], 100%d; c:\\edit"
    folder.mkdir()
    picture = make_picture(folder / "pic: it's [1], 50%.mp4", with_audio=True)
    audio = make_audio(folder / "audio, 'norm' [2].flac")
    srt = make_srt(folder)
    records = package.fn(picture, folder, audio, srt, BURN, FAST)
    assert [r.output for r in records] == [OUTPUT_NAME, BURNED_NAME]
    assert sorted(streams(folder / OUTPUT_NAME)) == ["audio", "subtitle", "video"]
    assert (frame_at(folder / BURNED_NAME, DURING_FIRST_CUE) > BRIGHT).sum() > MANY
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_no_sound_given_and_none_in_the_picture_gives_a_silent_video(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4")
    [record] = package.fn(picture, tmp_path, None, make_srt(tmp_path), PackageOptions(), FAST)
    assert sorted(streams(tmp_path / OUTPUT_NAME)) == ["subtitle", "video"]
    assert record.parameters["audio"] is None
    assert record.parameters["streams"] == ["video", "subtitles"]


def test_without_normalised_sound_the_pictures_own_aac_is_copied(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4", with_audio=True)
    [record] = package.fn(picture, tmp_path, None, None, BURN, FAST)
    found = streams(tmp_path / OUTPUT_NAME)
    assert [(a["codec"], a["sample_rate"]) for a in found["audio"]] == [("aac", 44_100)]
    assert record.parameters["audio"]["action"] == "copy"
    assert record.digital_source_type == "digitalCapture"  # a plain mux adds no type of its own


def test_without_subtitles_there_is_no_track_and_nothing_to_burn_in(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4")
    [record] = package.fn(picture, tmp_path, None, None, BURN, FAST)
    assert sorted(streams(tmp_path / OUTPUT_NAME)) == ["video"]
    assert not (tmp_path / BURNED_NAME).exists()
    assert record.parameters["subtitles_note"] == "no subtitles given"
    assert record.parameters["burn_in_note"] == f"no subtitles to draw: no {BURNED_NAME}"


def test_an_srt_without_cues_gives_no_subtitle_track_and_says_so(tmp_path, no_system_fonts):
    picture = make_picture(tmp_path / "picture.mp4")
    audio = make_audio(tmp_path / "audio.flac")
    srt = make_srt(tmp_path, cues=())
    assert srt.read_bytes().strip() == b""
    muxed, burned = package.fn(picture, tmp_path, audio, srt, BURN, FAST)
    assert sorted(streams(tmp_path / OUTPUT_NAME)) == ["audio", "video"]
    assert muxed.parameters["subtitles"] is None
    assert muxed.parameters["subtitles_note"] == f"{SRT_NAME} has no cues: no subtitle track"
    assert burned.parameters["subtitles_note"] == "no cues: nothing drawn"
    assert (frame_at(tmp_path / BURNED_NAME, DURING_FIRST_CUE) > BRIGHT).sum() == 0


def test_soft_subtitles_off_leaves_the_track_out(media):
    [record] = package.fn(media["picture"], media["dest"], media["audio"], media["srt"],
                          PackageOptions(soft_subtitles=False), FAST)  # fmt: skip
    assert "subtitle" not in streams(media["dest"] / OUTPUT_NAME)
    assert record.parameters["subtitles_note"] == "soft subtitles off in the recipe"


def test_a_picture_that_is_not_video_is_bad_input_and_leaves_nothing(tmp_path):
    picture = tmp_path / "picture.mp4"
    picture.write_text("not a video")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadInputError, match="picture.mp4"):
        package.fn(picture, dest, None, make_srt(tmp_path), BURN, FAST)
    assert list(dest.iterdir()) == []


def test_an_ffmpeg_failure_names_the_output_and_leaves_no_partial_file(tmp_path):
    picture = tmp_path / "picture.mkv"  # raw video: MP4 cannot hold it
    run_ffmpeg(["-f", "lavfi", "-i", "color=size=32x18:duration=1", "-c:v", "rawvideo", str(picture)], picture)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(AssetlineError, match=f"{OUTPUT_NAME}: ffmpeg failed"):
        package.fn(picture, dest, None, None, PackageOptions(), FAST)
    assert list(dest.iterdir()) == []


def test_a_sound_file_without_sound_is_bad_input(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4")
    with pytest.raises(BadInputError, match="no audio stream"):
        package.fn(picture, tmp_path, picture, None, PackageOptions(), FAST)
    assert not (tmp_path / OUTPUT_NAME).exists()


def test_the_shipped_font_folder_holds_only_fonts_and_the_license_ships_beside_it():
    assert sorted(p.name for p in FONTS_DIR.iterdir()) == [FONT_FILE]  # libass loads every file there
    assert "Bitstream Vera" in (FONTS_DIR.parent / "LICENSE_DEJAVU").read_text()


SPANISH = (
    SubtitleCue(1.0, 2.0, ("El rápido zorro marrón salta",)),
    SubtitleCue(2.5, 3.5, ("sobre el perro perezoso",)),
)


def two_languages(folder: Path) -> list[SubtitleTrack]:
    """Spanish speech (the spoken language, first) and its English translation, as the subtitles step writes them."""
    write_subtitles(SPANISH, folder / "subtitles.srt", folder / "subtitles.vtt")
    write_subtitles(CUES, folder / "subtitles.en.srt", folder / "subtitles.en.vtt")
    return [SubtitleTrack(folder / "subtitles.srt", "es"), SubtitleTrack(folder / "subtitles.en.srt", "en")]


def test_video_mp4_carries_one_track_per_language_tagged_iso_639_2_none_forced(tmp_path):
    picture = make_picture(tmp_path / "picture.mp4")
    [record] = package.fn(picture, tmp_path, None, two_languages(tmp_path), PackageOptions(), FAST)
    found = streams(tmp_path / OUTPUT_NAME)["subtitle"]
    assert [(s["codec"], s["language"]) for s in found] == [("mov_text", "spa"), ("mov_text", "eng")]
    assert not any(s["forced"] for s in found)
    assert [(t["default"], t["forced"]) for t in record.parameters["subtitles"]] == [(True, False), (False, False)]
    assert [t["language"] for t in record.parameters["subtitles"]] == ["spa", "eng"]
    assert record.parameters["streams"] == ["video", "subtitles", "subtitles"]
    # each track holds its own language's cues
    for index, cues in ((0, SPANISH), (1, CUES)):
        extracted = tmp_path / f"track{index}.srt"
        run_ffmpeg(["-i", str(tmp_path / OUTPUT_NAME), "-map", f"0:s:{index}", "-f", "srt", str(extracted)], extracted)
        assert pysubs2.load(str(extracted), format_="srt")[0].plaintext == cues[0].lines[0]


def test_burn_in_draws_the_language_burn_in_language_names(tmp_path, no_system_fonts):
    picture = make_picture(tmp_path / "picture.mp4")
    tracks = two_languages(tmp_path)
    _, english = package.fn(picture, tmp_path, None, tracks, PackageOptions(burn_in=True, burn_in_language="en"), FAST)
    assert (english.parameters["subtitles"]["source"], english.parameters["subtitles"]["language"]) == ("subtitles.en.srt", "eng")
    english_ink = (frame_at(tmp_path / BURNED_NAME, DURING_FIRST_CUE) > BRIGHT).sum()
    _, spoken = package.fn(picture, tmp_path, None, tracks, BURN, FAST)
    assert spoken.parameters["subtitles"]["language"] == "spa"  # default: the spoken language
    spanish_ink = (frame_at(tmp_path / BURNED_NAME, DURING_FIRST_CUE) > BRIGHT).sum()
    assert english_ink > MANY and spanish_ink > MANY
    assert english_ink > spanish_ink  # the English first cue is the longer line
