"""Subtitles: cues follow the broadcast rules (or say which they could not meet), files are valid and literal.

Examples pin each rule; hypothesis checks every rule on arbitrary word timings;
ffmpeg (the demuxer players use) reads what we write; one test subtitles real
speech transcribed by the real tiny.en model.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pysubs2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetline.captions import EXCEPTION_RULES, CueBuild, build_cues, normalise_text, write_subtitles
from assetline.config import SubtitleOptions, TranscribeOptions
from assetline.errors import BadInputError
from assetline.tasks.subtitles import SRT_NAME, TTML_NAME, VTT_NAME, subtitles
from assetline.transcript import Transcript, Word
from helpers.subtitle_rules import NEVER_EXCEPTIONS, Cue, check_cues

BROADCAST = SubtitleOptions()
MS = 0.001  # cue times are whole milliseconds, rounded towards the rule
EPS = 1e-9


def spoken(text: str, start: float = 0.5, seconds_per_char: float = 0.06, pause: float = 0.05,
           sentence_pause: float = 0.4) -> list[Word]:
    """Words as faster-whisper gives them (leading space), timed like calm speech."""
    words, t = [], start
    for token in text.split():
        duration = 0.05 + seconds_per_char * len(token)
        words.append(Word(t, t + duration, " " + token))
        t += duration + (sentence_pause if token[-1] in ".?!" else pause)
    return words


def cue_words(build: CueBuild) -> list[list[str]]:
    return [cue.text.split() for cue in build.cues]


def ffmpeg_reads(path: Path, forced_format: str | None = None) -> str:
    """The file converted to SRT by ffmpeg's own demuxer and decoder (what mpv and others use)."""
    fmt = ["-f", forced_format] if forced_format else []
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *fmt, "-i", str(path), "-f", "srt", "-"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def timing_lines(srt: str) -> int:
    """How many cues an SRT text holds, by its timing lines."""
    return len(re.findall(r"(?m)^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}$", srt))


def write_transcript(path: Path, words: list[Word], duration: float = 60.0) -> Path:
    segment = {
        "start": words[0].start if words else 0.0,
        "end": words[-1].end if words else 0.0,
        "text": "".join(w.text for w in words),
        "words": [{"start": w.start, "end": w.end, "word": w.text, "probability": w.probability} for w in words],
    }
    doc = {
        "schema": "assetline/transcript@1",
        "language": "en",
        "language_probability": 1.0,
        "duration": duration,
        "model": {"name": "whisper-tiny.en", "sha256": "0" * 64},
        "options": {},
        "segments": [segment] if words else [],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# --- line layout ---------------------------------------------------------------------------------

LONG_TALK = (
    "Good morning everyone. Today we are going to talk about the history of the city of Paris, and how "
    "Anna Smith changed the way people think about old buildings and their future. It took her many years "
    "of patient work with the archives of the national library before anyone believed what she had found."
)


def test_lines_never_exceed_42_characters():
    build = build_cues(spoken(LONG_TALK), BROADCAST)
    assert len(build.cues) >= 4
    for cue in build.cues:
        assert 1 <= len(cue.lines) <= 2
        assert all(len(line) <= 42 for line in cue.lines), cue.lines
    assert build.counts() == dict.fromkeys(EXCEPTION_RULES, 0)


def test_a_cue_that_fits_one_line_stays_on_one_line():
    (cue,) = build_cues(spoken("It took her many years."), BROADCAST).cues
    assert cue.lines == ("It took her many years.",)


def test_line_break_falls_after_punctuation():
    text = "We looked at the old maps together, and then we walked down to the river bank."
    (cue,) = build_cues(spoken(text), BROADCAST).cues
    assert cue.lines == ("We looked at the old maps together,", "and then we walked down to the river bank.")


def test_line_break_prefers_the_place_before_a_conjunction_or_preposition():
    # Balance alone gives "He usually drives to work but | today he took his bicycle".
    (cue,) = build_cues(spoken("He usually drives to work but today he took his bicycle"), BROADCAST).cues
    assert cue.lines == ("He usually drives to work", "but today he took his bicycle")


def test_no_break_between_article_and_noun():
    # Balance alone gives "Everyone who was waiting in the | long queue outside the museum".
    (cue,) = build_cues(spoken("Everyone who was waiting in the long queue outside the museum"), BROADCAST).cues
    assert len(cue.lines) == 2
    assert cue.lines[0].split()[-1] not in ("the", "a", "an")
    assert "the long queue" in cue.lines[1]


def test_no_break_inside_a_name():
    # Balance alone gives "Last night we finally met Anna | Maria Smith Jones at home".
    (cue,) = build_cues(spoken("Last night we finally met Anna Maria Smith Jones at home"), BROADCAST).cues
    assert cue.lines == ("Last night we finally met", "Anna Maria Smith Jones at home")


def test_a_word_longer_than_a_line_gets_its_own_line_and_is_counted():
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis-related"  # 53 characters
    build = build_cues(spoken(f"They said {long_word} again"), BROADCAST)
    lines = [line for cue in build.cues for line in cue.lines]
    assert long_word in lines
    overlong = [i for i, cue in enumerate(build.cues) if any(len(line) > 42 for line in cue.lines)]
    assert build.exceptions["line_length"] == tuple(overlong) and overlong


def test_rules_come_from_the_recipe():
    narrow = SubtitleOptions(max_chars_per_line=20, max_lines=1)
    build = build_cues(spoken(LONG_TALK), narrow)
    assert all(len(cue.lines) == 1 and len(cue.lines[0]) <= 20 for cue in build.cues)


# --- grouping into cues ---------------------------------------------------------------------------

def test_a_cue_ends_at_a_sentence_end():
    build = build_cues(spoken("The river was high that spring. Nobody had seen anything like it."), BROADCAST)
    assert [cue.text for cue in build.cues] == ["The river was high that spring.", "Nobody had seen anything like it."]


def test_a_long_pause_starts_a_new_cue():
    first = spoken("and so we waited")
    second = spoken("for the train to come", start=first[-1].end + 1.5)
    build = build_cues(first + second, BROADCAST)
    assert [cue.text for cue in build.cues] == ["and so we waited", "for the train to come"]


def test_short_sentences_in_quick_succession_share_a_cue():
    # "Yes." alone could not be shown for 5/6 s before "No." is spoken.
    words = [Word(1.0, 1.25, " Yes."), Word(1.4, 1.6, " No."), Word(1.7, 2.0, " Maybe.")]
    (cue,) = build_cues(words, BROADCAST).cues
    assert cue.text == "Yes. No. Maybe."


def test_every_word_appears_once_in_order_without_whisper_spaces():
    words = spoken(LONG_TALK)
    build = build_cues(words, BROADCAST)
    assert [w for ws in cue_words(build) for w in ws] == LONG_TALK.split()
    assert all(line == line.strip() and "  " not in line for cue in build.cues for line in cue.lines)


def test_a_piece_without_a_space_continues_the_word_before():
    # faster-whisper's words for "an ill-disposed man."
    words = [Word(1.0, 1.2, " an"), Word(1.2, 1.4, " ill"), Word(1.4, 1.9, "-disposed"), Word(1.9, 2.2, " man.")]
    (cue,) = build_cues(words, BROADCAST).cues
    assert cue.text == "an ill-disposed man."


def test_whitespace_and_control_characters_are_normalised():
    assert normalise_text("  Hello\n\tthere\x00\x1b ") == "Hello there"
    assert normalise_text(" \n ") == ""


# --- timing ---------------------------------------------------------------------------------------

def test_cue_never_starts_before_its_speech():
    words = spoken(LONG_TALK, start=0.0123)
    build = build_cues(words, BROADCAST)
    at = 0
    for cue, ws in zip(build.cues, cue_words(build)):
        assert words[at].start <= cue.start < words[at].start + 0.040 + MS  # the first frame of its speech (25 fps)
        at += len(ws)


def test_gap_between_cues_is_at_least_two_frames():
    # Sentences 10 ms apart: the earlier cue gives way so two frames separate them.
    words = spoken(LONG_TALK, pause=0.01, sentence_pause=0.01)
    for fps, gap in ((25.0, 0.080), (50.0, 0.040)):
        build = build_cues(words, BROADCAST, fps=fps)
        assert len(build.cues) >= 3
        for cue, after in zip(build.cues, build.cues[1:]):
            assert after.start - cue.end >= gap - EPS


def test_short_cue_is_shown_for_at_least_five_sixths_of_a_second():
    (cue,) = build_cues([Word(2.0, 2.2, " Yes.")], BROADCAST).cues
    assert cue.start == 2.0
    assert cue.end - cue.start >= 5 / 6


def test_slow_reading_extends_into_the_following_pause():
    # 40 characters said in 1 s need 40/17 = 2.35 s on screen; the pause allows it.
    words = [Word(1.0, 1.5, " Everybody in the village"), Word(1.5, 2.0, " knew the answer.")]
    later = [Word(6.0, 6.5, " Then"), Word(6.5, 7.0, " silence.")]
    build = build_cues(words + later, BROADCAST)
    first = build.cues[0]
    assert first.text == "Everybody in the village knew the answer."
    assert 0 <= first.end - first.start - len(first.text) / 17 < 0.040 + MS  # the first frame it may end on
    assert not build.exceptions["reading_speed"]


def test_fast_speech_keeps_speech_timing_and_is_counted():
    # 82 characters in 2 s, the next sentence 0.1 s later: 17 cps would need 4.8 s.
    fast = spoken("Honestly I cannot believe how quickly the whole thing fell apart in front of them.",
                  start=1.0, seconds_per_char=0.02, pause=0.0, sentence_pause=0.1)  # fmt: skip
    after = spoken("It was over.", start=fast[-1].end + 0.1)
    build = build_cues(fast + after, BROADCAST)
    first, second = build.cues
    assert first.start == 1.0  # never moved (1.0 s is a frame at 25 fps)
    assert first.end == pytest.approx(second.start - 0.080, abs=MS)  # runs up to the gap, not over
    assert len(first.text) / (first.end - first.start) > 17
    assert build.exceptions["reading_speed"] == (0,)
    assert build.counts()["reading_speed"] == 1


def test_cue_never_lasts_longer_than_seven_seconds():
    # Ten seconds of one unbroken, slow sentence.
    text = "and then the old man walked slowly along the edge of the quiet river towards the mill"
    build = build_cues(spoken(text, seconds_per_char=0.12), BROADCAST)
    assert len(build.cues) >= 2
    assert all(cue.end - cue.start <= 7.0 + EPS for cue in build.cues)


def test_build_is_deterministic():
    words = spoken(LONG_TALK)
    assert build_cues(words, BROADCAST) == build_cues(words, BROADCAST)


def test_no_words_give_no_cues():
    build = build_cues([], BROADCAST)
    assert build.cues == () and build.counts() == dict.fromkeys(EXCEPTION_RULES, 0)


def test_times_that_are_not_numbers_are_refused():
    with pytest.raises(ValueError, match="not a timed text"):
        build_cues([Word(float("nan"), 1.0, " hi")], BROADCAST)


# --- property tests over arbitrary word timings ----------------------------------------------------

ARTICLES = {"the", "a", "an", "this", "my"}
NAMES = {"Anna", "Smith", "Paris", "Mr."}
VOCABULARY = sorted(
    ARTICLES | NAMES
    | {"and", "but", "of", "to", "with", "because", "house", "river", "walked", "quickly", "really", "we",
       "I", "I'm", "it's", "yesterday", "extraordinary", "Smith.", "well,", "done.", "right?", "wow!",
       "supercalifragilisticexpialidocious-and-then-some", "-disposed", ",", "'s"}
)  # fmt: skip


def forbidden(before: str, after: str) -> bool:
    """A break that must not fall here: after an article, or inside a name."""
    return before in ARTICLES or (before in NAMES and after in NAMES | {"Smith."})


def display_tokens(words: list[Word]) -> list[tuple[str, list[Word]]]:
    """What a viewer should read, word by word: a piece that starts with punctuation and
    no space ("-disposed", "'s") continues the word before it."""
    tokens: list[tuple[str, list[Word]]] = []
    for word in words:
        text = normalise_text(word.text)
        if not text:
            continue
        if tokens and not word.text[0].isspace() and text[0] in "-,'":
            tokens[-1] = (tokens[-1][0] + text, tokens[-1][1] + [word])
        else:
            tokens.append((text, [word]))
    return tokens


@st.composite
def timed_words(draw, max_size: int = 60) -> list[Word]:
    """Monotone, non-overlapping words: any gaps (none, short, long) and durations (zero included)."""
    count = draw(st.integers(0, max_size))
    words, t = [], draw(st.floats(0, 5))
    for _ in range(count):
        t += draw(st.one_of(st.just(0.0), st.floats(0, 0.3), st.floats(0.3, 3.0)))
        duration = draw(st.one_of(st.just(0.0), st.floats(0, 0.6), st.floats(0.6, 8.0)))
        space = draw(st.sampled_from([" ", "", "  "]))
        words.append(Word(t, t + duration, space + draw(st.sampled_from(VOCABULARY))))
        t += duration
    return words


rule_sets = st.builds(
    SubtitleOptions,
    max_chars_per_line=st.integers(10, 60),
    max_lines=st.integers(1, 3),
    min_duration=st.floats(0.1, 1.0),  # never above max_duration: the recipe refuses that
    max_duration=st.floats(1.0, 10.0),
    max_chars_per_second=st.floats(5, 30),
    min_gap_frames=st.integers(0, 4),
    fps=st.sampled_from([23.976, 24.0, 25.0, 29.97, 50.0]),
    long_pause=st.floats(0.2, 3.0),
)


def assert_rules_hold(words: list[Word], rules: SubtitleOptions, fps: float | None, build: CueBuild,
                      vocabulary_only: bool = True) -> None:
    """Every rule holds for every cue, or the cue is counted for it (the suite's rule checker,
    tests/helpers/subtitle_rules.py), and only where it was not met; each word once, in order,
    never shown before it is spoken, and on screen until it has been said unless the next cue
    or max_duration cuts it.

    `forbidden` (an article, inside a name) is one of the checker's never-break pairs; for
    VOCABULARY words a cue break there is always counted.
    """
    fps = rules.fps if fps is None else fps
    frame = 1 / fps
    exc = build.exceptions
    assert set(exc) == set(EXCEPTION_RULES)
    said = display_tokens(words)
    assert [w for ws in cue_words(build) for w in ws] == [text for text, _ in said]  # each word once, in order

    checked = [Cue(c.start, c.end, c.lines) for c in build.cues]
    broken: dict[str, set[int]] = {}
    for violation in check_cues(checked, rules=rules, fps=fps, language="en"):
        broken.setdefault(violation.rule, set()).add(violation.cue)
    for rule, cues in broken.items():
        assert rule not in NEVER_EXCEPTIONS, (rule, build.cues)
        assert cues <= set(exc[rule]), (rule, cues, exc)  # broken only where counted
    for rule in ("reading_speed", "min_duration", "line_length", "gap_closing", "forced_break"):
        assert set(exc[rule]) <= broken.get(rule, set()), (rule, exc, broken)  # counted only where broken

    at = 0
    cues = build.cues
    for i, cue in enumerate(cues):
        shown = said[at : at + len(cue.text.split())]
        own = [w for _, ws in shown for w in ws]
        at += len(shown)
        after = cues[i + 1] if i + 1 < len(cues) else None
        if after is not None and vocabulary_only:
            last, first = cue.text.split()[-1], after.text.split()[0]
            if {last, first} <= set(VOCABULARY) and forbidden(last, first) and first not in ARTICLES | {"and", "but", "of", "to", "with", "because"} \
                    and first[:1] != "'" and any(ch.isalnum() for ch in first):  # a quote may open there
                assert i in exc["forced_break"]
        assert cue.start >= own[0].start - EPS  # never before its speech
        if i not in exc["delayed_start"]:
            assert cue.start <= own[0].start + frame + MS + EPS  # on the first frame of its speech
        assert 1 <= len(cue.lines) <= rules.max_lines
        room = min(cue.start + rules.max_duration, after.start - rules.min_gap_frames * frame if after else float("inf"))
        # Speech stays on screen until it ends, unless the next cue or max_duration cuts it (then it may end
        # up to gap_close_frames earlier, rather than leave a gap it cannot close).
        # (and the frame grid: max_duration ends on the last frame within it)
        slack = max(rules.gap_close_frames, rules.min_gap_frames + 1) * frame if room < max(w.end for w in own) else 0
        slack = max(slack, frame)
        assert cue.end >= min(max(w.end for w in own), room) - slack - MS - EPS
    assert at == len(said)
    assert build.counts() == {rule: len(exc[rule]) for rule in EXCEPTION_RULES}


@settings(max_examples=300, deadline=None)
@given(words=timed_words())
def test_broadcast_rules_hold_or_are_counted_for_any_word_timings(words):
    assert_rules_hold(words, BROADCAST, None, build_cues(words, BROADCAST))


@settings(max_examples=300, deadline=None)
@given(words=timed_words(), rules=rule_sets, fps=st.one_of(st.none(), st.sampled_from([24.0, 25.0, 30.0, 60.0])))
def test_any_recipe_rules_hold_or_are_counted_for_any_word_timings(words, rules, fps):
    assert_rules_hold(words, rules, fps, build_cues(words, rules, fps))


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=12).filter(lambda s: any(c.isalpha() for c in s)),
                      min_size=1, max_size=25))  # fmt: skip
def test_any_text_is_written_literally_and_parses_as_srt_and_vtt(texts):
    """Braces, backslashes, tags, entities, newlines: the files keep their cue count and show text, not styling."""
    words = [Word(i * 0.4, i * 0.4 + 0.3, " " + text) for i, text in enumerate(texts)]
    cues = build_cues(words, BROADCAST).cues
    with tempfile.TemporaryDirectory() as folder:
        srt, vtt = Path(folder) / SRT_NAME, Path(folder) / VTT_NAME
        write_subtitles(cues, srt, vtt)
        srt_text, vtt_text = srt.read_text(encoding="utf-8"), vtt.read_text(encoding="utf-8")
        for path, fmt in ((srt, "srt"), (vtt, "vtt")):
            read = pysubs2.load(str(path), format_=fmt)
            assert len(read) == len(cues)
            for event, cue in zip(read, cues):
                assert (event.start, event.end) == (round(cue.start * 1000), round(cue.end * 1000))
                assert event.text.count(r"\N") == len(cue.lines) - 1
                assert event.plaintext == event.text.replace(r"\N", "\n")  # no override block survived
    for payload in (srt_text, vtt_text):
        body = [line for line in payload.splitlines() if "-->" not in line]
        assert not any(ch in line for line in body for ch in "{}\\<>")


# --- files ----------------------------------------------------------------------------------------

def test_ass_override_codes_are_not_interpreted(tmp_path):
    words = [Word(1.0, 1.5, r" {\an8}Hello"), Word(1.5, 2.0, r" {\b1}world{\b0}"),
             Word(2.0, 2.5, " <i>quietly</i>"), Word(2.5, 3.0, r" Tom\Nand"), Word(3.0, 3.5, " Jerry&co")]  # fmt: skip
    cues = build_cues(words, BROADCAST).cues
    srt, vtt = tmp_path / SRT_NAME, tmp_path / VTT_NAME
    write_subtitles(cues, srt, vtt)

    shown = "(/an8)Hello (/b1)world(/b0) ‹i›quietly‹/i› Tom/Nand Jerry&co"
    (event,) = pysubs2.load(str(srt), format_="srt")
    assert event.plaintext.replace("\n", " ") == shown
    assert "{" not in srt.read_text(encoding="utf-8") and "\\" not in srt.read_text(encoding="utf-8")
    # ffmpeg turns SRT into SubStation for players: nothing in it may be an override block or a tag.
    rendered = ffmpeg_reads(srt)
    assert "(/an8)Hello" in rendered and "{" not in rendered and "<i>" not in rendered

    vtt_text = vtt.read_text(encoding="utf-8")
    assert "&lt;i&gt;quietly&lt;/i&gt;" in vtt_text and "Jerry&amp;co" in vtt_text
    assert "{" not in vtt_text and "\\" not in vtt_text
    rendered = ffmpeg_reads(vtt)  # ffmpeg decodes the entities back to the literal characters
    assert "<i>quietly</i>" in rendered and "Jerry&co" in rendered and "(/an8)Hello" in rendered


def test_newlines_in_a_word_cannot_inject_cues(tmp_path):
    words = [Word(1.0, 1.5, " Hi\n\n2\n00:00:05,000 --> 00:00:09,000\nfake"), Word(5.0, 5.5, " there.")]
    cues = build_cues(words, BROADCAST).cues
    write_subtitles(cues, tmp_path / SRT_NAME, tmp_path / VTT_NAME)
    assert [cue.lines for cue in cues] == [("Hi 2 00:00:05,000 --> 00:00:09,000 fake",), ("there.",)]
    # Players' parsers (ffmpeg's here) find cues by their blank line and arrow: still two.
    # (pysubs2's own reader is laxer, taking any line with two timestamps for a timing line.)
    assert timing_lines(ffmpeg_reads(tmp_path / SRT_NAME)) == 2
    assert timing_lines(ffmpeg_reads(tmp_path / VTT_NAME)) == 2


def test_files_parse_as_srt_and_webvtt_in_players(tmp_path):
    cues = build_cues(spoken(LONG_TALK), BROADCAST).cues
    write_subtitles(cues, tmp_path / SRT_NAME, tmp_path / VTT_NAME)
    assert (tmp_path / VTT_NAME).read_text(encoding="utf-8").startswith("WEBVTT\n")
    for name in (SRT_NAME, VTT_NAME):
        read = pysubs2.load(str(tmp_path / name))  # format detected from the content
        assert [e.plaintext.split("\n") for e in read] == [list(c.lines) for c in cues]
        assert timing_lines(ffmpeg_reads(tmp_path / name)) == len(cues)


def test_silence_gives_valid_empty_files(tmp_path):
    transcript = write_transcript(tmp_path / "transcript.json", [])
    records = subtitles.fn(transcript, tmp_path)
    srt, vtt = tmp_path / SRT_NAME, tmp_path / VTT_NAME
    assert srt.read_text(encoding="utf-8") == ""
    assert vtt.read_text(encoding="utf-8").strip() == "WEBVTT"
    assert len(pysubs2.load(str(srt), format_="srt")) == 0
    assert len(pysubs2.load(str(vtt))) == 0
    assert ffmpeg_reads(vtt) == ""
    assert ffmpeg_reads(srt, forced_format="srt") == ""  # an empty SRT has nothing to probe by
    assert [r.parameters["cues"] for r in records] == [0, 0, 0]  # SRT, VTT, TTML


# --- the task -------------------------------------------------------------------------------------

@pytest.mark.unchecked_subtitles  # fast speech on purpose, counted in the records; the task writes no sidecar
def test_subtitles_task_writes_both_files_and_one_record_each(tmp_path):
    fast = spoken("Honestly I cannot believe how quickly the whole thing fell apart in front of them.",
                  start=1.0, seconds_per_char=0.02, pause=0.0, sentence_pause=0.1)  # fmt: skip
    words = fast + spoken("It was over.", start=fast[-1].end + 0.1) + spoken(LONG_TALK, start=12.0)
    transcript = write_transcript(tmp_path / "transcript.json", words)
    records = subtitles.fn(transcript, tmp_path, SubtitleOptions(), fps=24.0)
    expected = build_cues(words, SubtitleOptions(), 24.0)

    assert [r.output for r in records] == [SRT_NAME, VTT_NAME, TTML_NAME]
    for record in records:
        assert record.name == "subtitles"
        if record.output == TTML_NAME:
            assert record.tool.name == "ttconv" and record.tool.version
        else:
            assert record.tool.name == "pysubs2" and record.tool.version == pysubs2.__version__
        assert record.model is None
        assert record.digital_source_type == "trainedAlgorithmicMedia"
        params = record.parameters
        assert params["max_chars_per_line"] == 42 and params["max_lines"] == 2
        assert params["min_duration"] == pytest.approx(5 / 6) and params["max_duration"] == 7.0
        assert params["max_chars_per_second"] == 17.0 and params["min_gap_frames"] == 2
        assert params["fps"] == 24.0
        assert params["cues"] == len(expected.cues)
        assert params["exceptions"] == expected.counts() and params["exceptions"]["reading_speed"] == 1
        assert params["transcript_model"] == "whisper-tiny.en"
        json.dumps(params)  # goes into the manifest as is
    assert len(pysubs2.load(str(tmp_path / SRT_NAME))) == len(expected.cues)
    assert len(pysubs2.load(str(tmp_path / VTT_NAME))) == len(expected.cues)


def test_a_file_that_is_not_a_transcript_is_bad_input(tmp_path):
    bad = tmp_path / "transcript.json"
    bad.write_text('{"language": "en"}', encoding="utf-8")
    with pytest.raises(BadInputError, match="not a transcript"):
        subtitles.fn(bad, tmp_path)
    with pytest.raises(BadInputError, match="cannot read transcript"):
        subtitles.fn(tmp_path / "missing.json", tmp_path)
    assert not (tmp_path / SRT_NAME).exists()


def test_real_speech_gives_cues_within_the_rules(tmp_path):
    """Real speech (tests/data) through the real tiny.en model, then subtitled."""
    data = Path(__file__).parent / "data"
    transcribe_module = pytest.importorskip("assetline.tasks.transcribe")
    clips = sorted(data.glob("*.wav"))
    if not clips:
        pytest.skip("no speech clips in tests/data")
    samples = []
    for clip in clips:
        with wave.open(str(clip)) as src:
            samples += [np.frombuffer(src.readframes(src.getnframes()), dtype="<i2"), np.zeros(8000, "<i2")]
    speech = tmp_path / "speech.wav"
    with wave.open(str(speech), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(np.concatenate(samples).tobytes())
    transcribe_module.transcribe.fn(speech, tmp_path, TranscribeOptions(model="whisper-tiny.en"))
    transcript_path = tmp_path / transcribe_module.OUTPUT_NAME

    records = subtitles.fn(transcript_path, tmp_path)
    words = Transcript.model_validate_json(transcript_path.read_bytes()).words()
    build = build_cues(words, BROADCAST)
    assert len(words) >= 40 and len(build.cues) >= 5
    assert_rules_hold(words, BROADCAST, None, build, vocabulary_only=False)
    assert records[0].parameters["exceptions"] == build.counts()
    assert timing_lines(ffmpeg_reads(tmp_path / SRT_NAME)) == len(build.cues)
