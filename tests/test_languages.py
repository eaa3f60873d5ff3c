"""Languages on real speech: detection, transcription in the spoken language, the English translation, the hard cases.

The speech is Debian's Asterisk prompts (CC-BY-SA-3.0; tests/helpers/speech.py), read by real
voices in English, Italian and Russian, with the transcripts Debian ships. The model is the
default, multilingual whisper-base. Each clip is transcribed once for the whole module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assetline.config import Recipe, SubtitleOptions, TranscribeOptions
from assetline.ffmpeg import run_ffmpeg
from assetline.tasks.subtitles import TRANSLATED_NAMES, output_names, subtitles
from assetline.flows._asset import Made
from assetline.review.policy import review_reasons
from assetline.tasks.transcribe import choose_language, transcribe
from assetline.transcript import Transcript, WindowLanguage
from helpers.speech import VOICES, fetch, prompt, word_error_rate

pytestmark = pytest.mark.slow  # whisper-base on about two minutes of speech, once per clip

CLIPS = {"en": "demo-congrats", "it": "demo-congrats", "ru": "demo-congrats"}
WER_TARGET = {"en": 0.15, "it": 0.35, "ru": 0.35}
# Words the English prompt says, which a translation of the Italian or Russian one should say too.
KEY_WORDS = ("congratulation", "install", "sound", "configuration", "demo", "phone", "command")


def text_of(segments) -> str:
    return " ".join(s["text"].strip() for s in segments)


def read(folder: Path) -> Transcript:
    return Transcript.model_validate_json((folder / "transcript.json").read_bytes())


def cue_files(transcript: Path, folder: Path, *args) -> list:
    """The subtitles step's files, each with the sidecar a run gives it (its step record), as the rule checker reads."""
    records = subtitles.fn(transcript, folder, *args)
    for r in records:
        sidecar = {"steps": [r.model_dump(mode="json")]}
        (folder / f"{r.output}.provenance.json").write_text(json.dumps(sidecar))
    return records


@pytest.fixture(scope="module")
def heard(tmp_path_factory):
    """language -> (record, transcript, folder): each clip transcribed once with the default options."""
    done = {}
    for language, name in CLIPS.items():
        folder = tmp_path_factory.mktemp(f"heard-{language}")
        record = transcribe.fn(prompt(language, name).wav, folder, TranscribeOptions())
        done[language] = (record, read(folder), folder)
    return done


@pytest.mark.parametrize("language", list(CLIPS))
def test_the_language_is_detected_and_recorded_with_its_probability(heard, language):
    record, transcript, _ = heard[language]
    assert transcript.language == language
    assert transcript.language_probability is not None and transcript.language_probability >= 0.9
    assert [w.language for w in transcript.windows] == [language]
    assert transcript.flags == []
    params = record.parameters
    assert (params["language"], params["language_used"], params["language_detected"]) == ("auto", language, True)
    assert params["language_probability"] == transcript.language_probability
    assert params["flags"] == []


@pytest.mark.parametrize("language", list(CLIPS))
def test_speech_is_transcribed_in_its_own_language_within_the_word_error_target(heard, language):
    _, transcript, _ = heard[language]
    wer = word_error_rate(prompt(language, CLIPS[language]).text, text_of(transcript.segments))
    assert wer <= WER_TARGET[language], (language, wer, text_of(transcript.segments))


@pytest.mark.parametrize("language", ["it", "ru"])
def test_speech_that_is_not_english_is_translated_and_reads_as_english(heard, language):
    record, transcript, _ = heard[language]
    assert transcript.translation is not None and transcript.translation.language == "en"
    english = text_of(transcript.translation.segments).lower()
    assert not re.search(r"[а-яё]", english)  # no Cyrillic left
    said = [k for k in KEY_WORDS if k in english]
    assert len(said) >= 4, (said, english)
    assert transcript.translation.words(), "the translation is timed word by word, for the same cue rules"
    assert record.parameters["translation"]["task"] == "translate"


def test_english_speech_gets_no_translation_file_not_an_empty_one(heard, tmp_path):
    _, transcript, folder = heard["en"]
    assert transcript.translation is None
    records = cue_files(folder / "transcript.json", tmp_path)
    assert sorted(r.output for r in records) == sorted(output_names())
    assert not any((tmp_path / name).exists() for name in TRANSLATED_NAMES)


def test_a_translated_clip_gets_english_subtitles_by_the_same_rules(heard, tmp_path):
    _, _, folder = heard["it"]
    records = cue_files(folder / "transcript.json", tmp_path, SubtitleOptions(), 25.0)
    assert [r.output for r in records] == output_names(translated=True)
    by_output = {r.output: r.parameters for r in records}
    assert by_output["subtitles.srt"]["language"] == "it" and by_output["subtitles.srt"]["text_from"] == "transcribe"
    assert by_output["subtitles.en.srt"]["language"] == "en" and by_output["subtitles.en.srt"]["text_from"] == "translate"
    assert by_output["subtitles.en.srt"]["cues"] > 0
    assert 'xml:lang="en"' in (tmp_path / "subtitles.en.ttml").read_text()
    assert 'xml:lang="it"' in (tmp_path / "subtitles.ttml").read_text()


def test_forbidden_terms_flag_the_cues_that_hold_them(heard, tmp_path):
    _, _, folder = heard["en"]
    records = cue_files(folder / "transcript.json", tmp_path, SubtitleOptions(), None, ["hang up", "PBX"])
    params = records[0].parameters
    flagged = params["forbidden"]
    assert params["forbidden_terms"] == ["hang up", "PBX"]
    assert params["flags"] == ["forbidden_terms"]
    assert {t for cue in flagged for t in cue["terms"]} == {"hang up", "PBX"}
    srt = (tmp_path / "subtitles.srt").read_text()
    for cue in flagged:  # each flagged cue is the one in the file that holds the term
        block = srt.split("\n\n")[cue["cue"] - 1]
        assert any(t.lower() in block.lower().replace("\n", " ") for t in cue["terms"])
    # and the run's summary in the Prefect UI lists them
    from assetline.flows._asset import AssetResult
    from assetline.flows._report import asset_summary

    result = AssetResult("demo-congrats.wav", "done", "audio", "0" * 64, str(tmp_path), [r.output for r in records])
    _, markdown = asset_summary(result, tmp_path / "demo-congrats.wav")
    assert f"**Forbidden terms** in {len(flagged)} cue(s) of subtitles.srt" in markdown
    assert all(f"- cue {c['cue']} at " in markdown for c in flagged)


# ---- hard cases -------------------------------------------------------------------------------


def test_music_and_noise_without_speech_give_no_language_and_empty_subtitles(tmp_path):
    music = tmp_path / "music.wav"
    tones = [x for f in (220, 277, 330) for x in ("-f", "lavfi", "-i", f"sine=frequency={f}:duration=8")]
    run_ffmpeg([*tones, "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:duration=8",
                "-filter_complex", "amix=inputs=4,tremolo=f=4", str(music)], music)  # fmt: skip
    record = transcribe.fn(music, tmp_path, TranscribeOptions())
    transcript = read(tmp_path)
    assert (transcript.language, transcript.language_probability, transcript.flags) == ("und", None, ["no_speech"])
    assert transcript.segments == [] and transcript.translation is None
    assert record.parameters["flags"] == ["no_speech"]
    records = cue_files(tmp_path / "transcript.json", tmp_path)
    assert [r.parameters["cues"] for r in records] == [0, 0, 0]
    assert not any((tmp_path / name).exists() for name in TRANSLATED_NAMES)


def test_two_languages_in_one_clip_are_detected_window_by_window_and_said(tmp_path):
    italian, english = prompt("it", "demo-congrats").wav, prompt("en", "demo-congrats").wav
    both = tmp_path / "both.wav"
    run_ffmpeg(["-i", str(italian), "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono:d=1.5", "-i", str(english),
                "-filter_complex", "[0:a][1:a][2:a]concat=n=3:v=0:a=1", str(both)], both)  # fmt: skip
    record = transcribe.fn(both, tmp_path, TranscribeOptions(window_seconds=30))
    transcript = read(tmp_path)
    assert [w.language for w in transcript.windows if w.speech_seconds] == ["it", "en"]
    assert "several_languages" in transcript.flags
    assert set(record.parameters["speech_seconds_by_language"]) == {"it", "en"}
    assert transcript.language in ("it", "en")  # the one with more speech: about 30 s of each
    # each window was transcribed in its own language, and the translation holds both halves in English
    assert "installato" in text_of(transcript.segments) and "installed" in text_of(transcript.segments)
    assert transcript.translation is not None
    assert "congratulations" in text_of(transcript.translation.segments).lower()


def test_a_language_heard_with_low_confidence_is_recorded_and_flagged(tmp_path):
    short = fetch() / "usr" / "share" / "asterisk" / "sounds" / VOICES["it"] / "calling.wav"  # "chiamata", 0.66 s
    record = transcribe.fn(short, tmp_path, TranscribeOptions())
    transcript = read(tmp_path)
    assert transcript.language_probability is not None and transcript.language_probability < 0.7
    assert record.parameters["language_probability"] == transcript.language_probability
    # One threshold decides it, the review policy's (review.min_language_probability, 0.8)
    held = review_reasons("audio", [Made(tmp_path / "transcript.json", [], [record])], Recipe())
    uncertain = [r for r in held if r.flag == "language_uncertain"]
    assert len(uncertain) == 1 and "under 0.8" in uncertain[0].detail, held


def test_the_clip_language_is_the_one_heard_over_the_most_speech():
    windows = [
        WindowLanguage(start=0, end=60, speech_seconds=12.0, language="en", probability=0.6),
        WindowLanguage(start=60, end=120, speech_seconds=50.0, language="es", probability=0.95),
        WindowLanguage(start=120, end=180, speech_seconds=40.0, language="es", probability=0.85),
        WindowLanguage(start=180, end=200, speech_seconds=0.0, language=None, probability=None),
    ]
    language, probability, flags = choose_language(windows)
    assert language == "es" and probability == pytest.approx((50 * 0.95 + 40 * 0.85) / 90, abs=1e-4)
    assert flags == ["several_languages"]  # 12 s of English: at least 3 s and a tenth of the speech
    windows[0] = windows[0].model_copy(update={"speech_seconds": 5.0})
    assert choose_language(windows)[2] == []  # 5 s in 95: a stray window, not a second language
    assert choose_language(windows[3:]) == ("und", None, ["no_speech"])


def test_a_glossary_term_restores_its_spelling_and_one_never_heard_is_recorded(tmp_path):
    en = prompt("en", "demo-congrats").wav
    plain = tmp_path / "plain"
    plain.mkdir()
    transcribe.fn(en, plain, TranscribeOptions(model="whisper-tiny.en"))
    assert "asterisk" in text_of(read(plain).segments)  # tiny.en, untaught, writes the name in lower case
    taught = tmp_path / "taught"
    taught.mkdir()
    record = transcribe.fn(en, taught, TranscribeOptions(model="whisper-tiny.en", glossary=["Asterisk", "Zorbulax"]))
    text = text_of(read(taught).segments)
    assert "Asterisk" in text and "asterisk" not in text
    assert all("asterisk" not in w.text for w in read(taught).words())  # the words the cues are built from too
    result = record.parameters["glossary_result"]
    assert result["not_heard"] == ["Zorbulax"]  # a term the speech never says changes nothing, and is reported
    assert word_error_rate(prompt("en", "demo-congrats").text, text) <= 0.15


def test_a_forced_language_is_used_not_detected(tmp_path):
    clip = prompt("it", "demo-thanks")  # 4.5 s: "Arrivederci. Grazie per aver provato il PBX Open Source Asterisk."
    record = transcribe.fn(clip.wav, tmp_path, TranscribeOptions(language="it", translate_to=None))
    transcript = read(tmp_path)
    assert (transcript.language, transcript.language_probability) == ("it", None)
    assert [w.language for w in transcript.windows] == ["it"]
    assert record.parameters["language_detected"] is False and transcript.translation is None
    assert word_error_rate(clip.text, text_of(transcript.segments)) <= WER_TARGET["it"]
