"""TTML delivery: subtitles.ttml is IMSC 1.1 Text, timed in frames, and says what the SRT says.

The files come from the subtitles step on a transcript written here; the TTML is read back
with ttconv's IMSC reader (and plain XML for the attributes), the SRT with pysubs2.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as et
from pathlib import Path

import pysubs2
import pytest

from assetline.captions import SubtitleCue
from assetline.captions.writing import IMSC11_TEXT, frame_rate, read_ttml, ttml_document
from assetline.config import SubtitleOptions
from assetline.tasks.subtitles import subtitles

TT = "{http://www.w3.org/ns/ttml}"
TTP = "{http://www.w3.org/ns/ttml#parameter}"
TTS = "{http://www.w3.org/ns/ttml#styling}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

TALK = (
    "Good morning everyone. Today we are going to talk about the history of the city of Paris, and how "
    "Anna Smith changed the way people think about old buildings. It took her many years of patient work "
    "in the archives before anyone believed what she had found there."
)


def transcript(path: Path, text: str = TALK, language: str = "en") -> Path:
    """A transcript of `text` spoken at an even 2.6 words a second, with a pause after each sentence."""
    words, t = [], 0.37
    for raw in text.split():
        words.append({"start": round(t, 3), "end": round(t + 0.3, 3), "word": " " + raw, "probability": 0.9})
        t += 0.385 + (0.6 if raw.endswith(".") else 0.0)
    doc = {
        "schema": "assetline/transcript@1", "language": language, "language_probability": 0.99, "duration": t + 1,
        "model": {"name": "whisper-base", "sha256": "0" * 64}, "options": {},
        "segments": [{"start": words[0]["start"], "end": words[-1]["end"], "text": text, "words": words}],
    }  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def written(tmp_path: Path, fps: float, language: str = "en") -> tuple[Path, list]:
    records = subtitles.fn(transcript(tmp_path / "transcript.json", language=language), tmp_path, SubtitleOptions(), fps)
    for r in records:  # the sidecars a run writes, which the suite's rule checker reads
        (tmp_path / f"{r.output}.provenance.json").write_text(json.dumps({"steps": [{"parameters": r.parameters}]}))
    return tmp_path / "subtitles.ttml", records


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_ttml_holds_the_same_cues_and_times_as_the_srt(tmp_path, fps):
    ttml, _ = written(tmp_path, fps)
    srt = pysubs2.load(str(tmp_path / "subtitles.srt"), format_="srt")
    back = read_ttml(ttml.read_bytes())
    assert len(back) == len(srt) >= 3
    half_frame = 0.5 / fps
    for cue, event in zip(back, srt):
        assert cue.lines == tuple(event.plaintext.split("\n"))
        assert cue.start == pytest.approx(event.start / 1000, abs=half_frame)
        assert cue.end == pytest.approx(event.end / 1000, abs=half_frame)


def test_ttml_is_imsc_1_1_text_timed_in_frames_of_the_media(tmp_path):
    ttml, _ = written(tmp_path, 25.0, language="es")
    root = et.parse(ttml).getroot()
    assert root.tag == f"{TT}tt"
    assert root.get(XML_LANG) == "es"
    assert root.get(f"{TTP}contentProfiles") == IMSC11_TEXT
    assert root.get(f"{TTP}timeBase") == "media"
    assert root.get(f"{TTP}frameRate") == "25" and root.get(f"{TTP}frameRateMultiplier") is None
    paragraphs = list(root.iter(f"{TT}p"))
    assert paragraphs and all(p.get("begin").endswith("f") and p.get("end").endswith("f") for p in paragraphs)
    [region] = list(root.iter(f"{TT}region"))
    assert (region.get(f"{TTS}displayAlign"), region.get(f"{TTS}textAlign")) == ("after", "center")  # bottom centre
    assert region.get(f"{TTS}color") and region.get(f"{TTS}fontFamily")
    assert root.find(f"{TT}body").get("region") == region.get("{http://www.w3.org/XML/1998/namespace}id")


def test_ntsc_rates_are_exact_fractions():
    assert frame_rate(29.97) == frame_rate(30000 / 1001) and frame_rate(29.97).denominator == 1001
    assert frame_rate(23.976).numerator == 24000 and frame_rate(25.0) == 25
    root = et.fromstring(ttml_document([SubtitleCue(1.001, 2.002, ("a b",))], "en", 29.97))
    assert (root.get(f"{TTP}frameRate"), root.get(f"{TTP}frameRateMultiplier")) == ("30", "1000 1001")
    [p] = list(root.iter(f"{TT}p"))
    assert (p.get("begin"), p.get("end")) == ("30f", "60f")


def test_text_that_looks_like_markup_is_shown_as_text():
    cue = SubtitleCue(0.0, 1.0, ("<b>5 & 6</b>", "{\\an8}"))
    back = read_ttml(ttml_document([cue], "en", 25))
    assert back == [SubtitleCue(0.0, 1.0, ("<b>5 & 6</b>", "{\\an8}"))]


def test_no_cues_give_a_valid_document_with_nothing_shown():
    root = et.fromstring(ttml_document([], "und", 25))
    assert root.get(XML_LANG) == "und" and list(root.iter(f"{TT}p")) == []
    assert read_ttml(ttml_document([], "und", 25)) == []
