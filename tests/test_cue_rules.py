"""Cue timing and layout to the Netflix and BBC guides: the planner, the frame grid, gap chaining, shot changes,
the per-language word lists, and the rule checker itself (tests/helpers/subtitle_rules.py).

Real speech: word timings of two Debian Asterisk prompts as whisper-tiny.en gave them
(tests/data/asterisk_en_words.json, see tests/data/README.md). Hypothesis checks the rules
for any word timings; the W3C's WebVTT parser (npm webvtt-parser) reads what we write.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetline.captions import EXCEPTION_RULES, NEUTRAL, available_languages, build_cues, word_list, write_subtitles
from assetline.captions.words import never_break
from assetline.config import SubtitleOptions
from assetline.errors import BadInputError
from assetline.transcript import Word
from helpers.subtitle_rules import NEVER_EXCEPTIONS, Cue, check_cues, check_file, webvtt_validate

BROADCAST = SubtitleOptions()
DATA = Path(__file__).parent / "data"
FRAME = 0.04  # at 25 fps


def real_words(clip: str) -> list[Word]:
    doc = json.loads((DATA / "asterisk_en_words.json").read_text(encoding="utf-8"))
    return [Word(start, end, text) for start, end, text in doc["clips"][clip]["words"]]


def as_checked(build) -> list[Cue]:
    return [Cue(c.start, c.end, c.lines) for c in build.cues]


def spoken(text: str, start: float = 0.5, seconds_per_char: float = 0.06, pause: float = 0.05) -> list[Word]:
    words, t = [], start
    for token in text.split():
        duration = 0.05 + seconds_per_char * len(token)
        words.append(Word(t, t + duration, " " + token))
        t += duration + (0.4 if token[-1] in ".?!" else pause)
    return words


def broken_rules(build, rules=BROADCAST, fps=None, language="en", shot_changes=()) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for v in check_cues(as_checked(build), rules=rules, fps=fps, language=language, shot_changes=list(shot_changes)):
        found.setdefault(v.rule, set()).add(v.cue)
    return found


# --- real speech: the figures -------------------------------------------------------------

@pytest.mark.parametrize("clip", ["demo-congrats", "demo-echotest"])
def test_real_speech_meets_every_rule_without_exceptions(clip):
    build = build_cues(real_words(clip), BROADCAST)
    assert build.counts() == dict.fromkeys(EXCEPTION_RULES, 0)
    assert check_cues(as_checked(build)) == []
    for cue in build.cues:
        assert sum(map(len, cue.lines)) / (cue.end - cue.start) <= 17.0
        assert len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)


def test_real_speech_breaks_where_a_subtitler_would():
    echo = [cue.lines for cue in build_cues(real_words("demo-echotest"), BROADCAST).cues]
    texts = [" ".join(lines) for lines in echo]
    breaks = [(a.split()[-1], b.split()[0]) for lines in echo for a, b in zip(lines, lines[1:])]
    breaks += [(a.split()[-1], b.split()[0]) for a, b in zip(texts, texts[1:])]
    for pair in [("will", "be"), ("soon", "as"), ("is", "running"), ("give", "you")]:
        assert pair not in breaks, echo
    assert not any(t.strip() == "as it is received." for t in texts)  # no orphan
    congrats = [" ".join(c.lines) for c in build_cues(real_words("demo-congrats"), BROADCAST).cues]
    assert any("a console channel driver," in t for t in congrats)  # the compound noun together
    assert any("the dial, answer, and hang up commands" in t for t in congrats)  # the list in one cue


def test_main_greedy_cues_fail_the_checker():
    """The cues main wrote for demo-echotest (before this planner): the checker finds what the issue reports."""
    main_cues = [
        Cue(0.0, 2.34, ("You are about to enter an echo test.",)),
        Cue(2.82, 6.96, ("In this mode, everything you say will", "be repeated back to you just as soon")),
        Cue(7.04, 8.099, ("as it is received.",)),
        Cue(8.4, 12.52, ("The purpose of this test is to give", "you an audible sense of the latency")),
        Cue(12.6, 17.06, ("between you and the machine that is", "running the echo test application.")),
        Cue(17.6, 21.78, ("You may end the test by hanging up", "or by pressing the pound key.")),
    ]
    rules = {v.rule for v in check_cues(main_cues)}
    assert {"frame_grid", "reading_speed", "gap_closing", "forced_break"} <= rules


# --- timing ---------------------------------------------------------------------------------------

def test_times_are_on_the_frame_grid_of_the_footage():
    words = spoken("The river was high that spring. Nobody had seen anything like it.", start=0.0123)
    for fps in (25.0, 24.0, 29.97, 50.0):
        build = build_cues(words, BROADCAST, fps)
        assert build.fps == pytest.approx(fps, abs=0.001)  # 29.97 is 30000/1001
        for cue in build.cues:
            for t in (cue.start, cue.end):
                assert abs(round(t * fps) / fps - t) <= 0.0005 + 1e-9
        assert "frame_grid" not in broken_rules(build, fps=fps)


def test_a_gap_under_twelve_frames_is_closed_to_two():
    first = spoken("The river was high that spring.", start=1.0)
    (alone,) = build_cues(first, BROADCAST).cues
    second = spoken("Nobody had seen anything like it.", start=alone.end + 6 * FRAME)  # 6 frames after it would end
    a, b = build_cues(first + second, BROADCAST).cues
    assert a.start == alone.start and round((b.start - a.end) / FRAME) == 2  # runs on into the pause
    # a gap of 12 frames or more stays open
    later = spoken("Nobody had seen anything like it.", start=alone.end + 14 * FRAME)
    a, b = build_cues(first + later, BROADCAST).cues
    assert a == alone and round((b.start - a.end) / FRAME) == 14


def test_never_shown_before_its_speech():
    words = spoken("Good morning everyone. Today we talk about the river.", start=0.0123)
    build = build_cues(words, BROADCAST)
    assert build.cues[0].start >= 0.0123 and build.cues[0].start < 0.0123 + FRAME


def test_a_cue_snaps_to_a_shot_change_near_its_start_and_end():
    words = spoken("The river was high that spring.", start=1.0)
    plain = build_cues(words, BROADCAST).cues[0]
    cut_in = plain.start + 5 * FRAME  # five frames after the speech starts: the cue starts on the cut
    cut_out = plain.end + 4 * FRAME  # four frames after it would end: it ends on the cut (or 2 frames before)
    (cue,) = build_cues(words, BROADCAST, shot_changes=[cut_in, cut_out]).cues
    assert cue.start == pytest.approx(cut_in, abs=0.001)
    assert round((cut_out - cue.end) / FRAME) in (0, 2)
    # a cut just before the speech: the cue waits 12 frames after it rather than show early
    cut_before = plain.start - 3 * FRAME
    (cue,) = build_cues(words, BROADCAST, shot_changes=[cut_before]).cues
    assert round((cue.start - cut_before) / FRAME) == 12
    for cuts in ([cut_in, cut_out], [cut_before]):
        build = build_cues(words, BROADCAST, shot_changes=cuts)
        assert "shot_change" not in broken_rules(build, shot_changes=cuts)


def test_fast_speech_keeps_its_timing_and_is_counted():
    fast = spoken("Honestly I cannot believe how quickly the whole thing fell apart in front of them.",
                  start=1.0, seconds_per_char=0.02, pause=0.0)  # fmt: skip
    after = spoken("It was over.", start=fast[-1].end + 0.1)
    build = build_cues(fast + after, BROADCAST)
    assert build.counts()["reading_speed"] >= 1
    broken = broken_rules(build)
    assert broken.get("reading_speed") and len(broken["reading_speed"]) <= build.counts()["reading_speed"]


# --- layout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("before", "after", "language", "rule"),
    [
        ("the", "house", "en", "determiner"), ("old", "house", "en", "adjective"), ("Anna", "Smith", "en", "name"),
        ("you", "say", "en", "pronoun"), ("will", "be", "en", "auxiliary"), ("not", "go", "en", "negation"),
        ("hang", "up", "en", "particle"), ("of", "the", "en", "preposition"), ("el", "perro", "es", "determiner"),
        ("no", "quiero", "es", "negation"), ("la", "maison", "fr", "determiner"), ("dans", "la", "fr", "preposition"),
        ("mit", "dem", "de", "preposition"), ("il", "cane", "it", "determiner"), ("não", "sei", "pt", "negation"),
    ],
)  # fmt: skip
def test_never_break_pairs_in_each_language(before, after, language, rule):
    assert never_break(before, after, word_list(language)) == rule
    assert never_break(before + ",", after, word_list(language)) is None  # punctuation frees the break


def test_word_lists_are_data_for_six_languages_and_unknown_is_neutral():
    assert {"en", "es", "fr", "de", "it", "pt"} <= set(available_languages())
    for code in ("en", "es", "fr", "de", "it", "pt"):
        words = word_list(code)
        assert words.language == code and words.determiners and words.prepositions and words.auxiliaries
    assert word_list("EN-gb").language == "en"
    neutral = word_list("xx")
    assert neutral.language == NEUTRAL and never_break("the", "house", neutral) is None
    build = build_cues(spoken("The river was high that spring."), BROADCAST, language="xx")
    assert build.word_list == NEUTRAL and build.cues
    assert build_cues(spoken("hola amigos."), BROADCAST, language="es").word_list == "es"


def test_a_spanish_sentence_keeps_its_pairs_together():
    text = "Mañana por la mañana vamos a visitar el museo de la ciudad con nuestros amigos de la escuela."
    build = build_cues(spoken(text), BROADCAST, language="es")
    assert build.counts()["forced_break"] == 0
    assert "forced_break" not in broken_rules(build, language="es")
    assert all(len(line) <= 42 for cue in build.cues for line in cue.lines)


def test_two_line_cues_are_bottom_heavy_where_the_breaks_allow():
    (cue,) = build_cues(spoken("We looked at the old maps together, and then we walked down to the river."),
                        BROADCAST).cues  # fmt: skip
    top, bottom = cue.lines
    assert top.endswith("together,") and len(bottom) >= len(top)


def test_a_two_cue_sentence_splits_at_its_strongest_boundary():
    text = ("When the old museum finally opened its doors again last spring, "
            "thousands of visitors came back to see the new rooms and the garden.")  # fmt: skip
    build = build_cues(spoken(text, seconds_per_char=0.07), BROADCAST)
    assert len(build.cues) == 2
    assert build.cues[0].text.endswith("spring,")


def test_no_cue_leaves_a_short_fragment_of_a_sentence():
    text = ("Everyone in the small village by the river knew exactly what had happened that night, "
            "and nobody said a word.")  # fmt: skip
    build = build_cues(spoken(text, seconds_per_char=0.08), BROADCAST)
    for cue in build.cues:
        if not cue.text.endswith("."):
            assert len(cue.text) >= 20
    assert not any(cue.text == "and nobody said a word." and len(cue.text) < 20 for cue in build.cues)


# --- properties -----------------------------------------------------------------------------------

VOCABULARY = ["the", "a", "house", "river", "walked", "quickly", "and", "but", "of", "to", "with", "we", "I",
              "will", "be", "not", "hang", "up", "old", "Anna", "Smith", "Smith.", "well,", "done.", "right?",
              "as", "soon", "el", "perro", "extraordinary", "supercalifragilisticexpialidocious-and-then-some"]  # fmt: skip


@st.composite
def timed_words(draw, max_size: int = 50) -> list[Word]:
    count = draw(st.integers(0, max_size))
    words, t = [], draw(st.floats(0, 5))
    for _ in range(count):
        t += draw(st.one_of(st.just(0.0), st.floats(0, 0.3), st.floats(0.3, 3.0)))
        duration = draw(st.one_of(st.just(0.0), st.floats(0, 0.6), st.floats(0.6, 8.0)))
        words.append(Word(t, t + duration, " " + draw(st.sampled_from(VOCABULARY))))
        t += duration
    return words


rule_sets = st.builds(
    SubtitleOptions,
    max_chars_per_line=st.integers(10, 60), max_lines=st.integers(1, 3), min_duration=st.floats(0.1, 1.0),
    max_duration=st.floats(1.0, 10.0), max_chars_per_second=st.floats(5, 30), min_gap_frames=st.integers(0, 4),
    gap_close_frames=st.integers(0, 20), shot_change_frames=st.integers(0, 20),
    fps=st.sampled_from([23.976, 24.0, 25.0, 29.97, 50.0]), long_pause=st.floats(0.2, 3.0),
)  # fmt: skip


def assert_rules_hold_or_are_counted(words, rules, fps, language, cuts):
    build = build_cues(words, rules, fps, language=language, shot_changes=cuts)
    counts = build.counts()
    assert set(counts) == set(EXCEPTION_RULES)
    shown = [w for cue in build.cues for w in cue.text.split()]
    assert len(shown) == len([w for w in words if w.text.strip()])  # every word once (no pieces to join here)
    broken = broken_rules(build, rules, fps, language, cuts)
    for rule, cues in broken.items():
        assert rule not in NEVER_EXCEPTIONS, (rule, build.cues)
        assert len(cues) <= counts[rule], (rule, cues, counts, build.cues)
    for rule in ("reading_speed", "min_duration", "line_length", "gap_closing", "forced_break"):
        assert set(build.exceptions[rule]) <= broken.get(rule, set()), (rule, build.exceptions, broken)
    # never before its speech
    at = 0
    spoken_words = [w for w in words if w.text.strip()]
    for cue in build.cues:
        assert cue.start >= spoken_words[at].start - 1e-9
        at += len(cue.text.split())


@settings(max_examples=200, deadline=None)
@given(words=timed_words(), cuts=st.lists(st.floats(0.0, 60.0), max_size=6), language=st.sampled_from(["en", "es", "xx"]))
def test_broadcast_rules_hold_or_are_counted_for_any_word_timings(words, cuts, language):
    assert_rules_hold_or_are_counted(words, BROADCAST, None, language, cuts)


@settings(max_examples=200, deadline=None)
@given(words=timed_words(30), rules=rule_sets, fps=st.one_of(st.none(), st.sampled_from([24.0, 25.0, 30.0, 60.0])),
       cuts=st.lists(st.floats(0.0, 60.0), max_size=4))  # fmt: skip
def test_any_recipe_rules_hold_or_are_counted_for_any_word_timings(words, rules, fps, cuts):
    assert_rules_hold_or_are_counted(words, rules, fps, "en", cuts)


# --- files and the checker ------------------------------------------------------------------------

def test_files_pass_the_checker_and_the_w3c_webvtt_parser(tmp_path):
    build = build_cues(real_words("demo-echotest"), BROADCAST)
    srt, vtt = tmp_path / "subtitles.srt", tmp_path / "subtitles.vtt"
    write_subtitles(build.cues, srt, vtt)
    assert check_file(srt) == [] and check_file(vtt) == []
    try:
        (result,) = webvtt_validate([vtt])
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the W3C's webvtt-parser could not run here: {exc}")
    assert result["errors"] == []
    assert [(c["start"], c["end"]) for c in result["cues"]] == [(c.start, c.end) for c in build.cues]
    assert [c["text"].split("\n") for c in result["cues"]] == [list(c.lines) for c in build.cues]


@pytest.mark.unchecked_subtitles
def test_the_checker_fails_a_file_that_breaks_rules_it_does_not_count(tmp_path):
    srt = tmp_path / "subtitles.srt"
    srt.write_text("1\n00:00:01,010 --> 00:00:01,500\nIn this mode, everything you say will\nbe repeated.\n\n"
                   "2\n00:00:01,540 --> 00:00:03,000\nthe\n", encoding="utf-8")  # fmt: skip
    problems = " ".join(check_file(srt))
    for rule in ("frame_grid", "min_duration", "reading_speed", "gap", "forced_break"):
        assert rule in problems, problems
    # Counted in the sidecar, a countable rule passes; the frame grid and the gap never do.
    counted = {"min_duration": 1, "reading_speed": 1, "forced_break": 1}
    sidecar = {"steps": [{"name": "subtitles", "parameters": {"fps": 25.0, "language": "en", "exceptions": counted}}]}
    (tmp_path / "subtitles.srt.provenance.json").write_text(json.dumps(sidecar), encoding="utf-8")
    problems = " ".join(check_file(srt))
    assert "frame_grid" in problems and " gap " in problems
    assert "reading_speed" not in problems and "forced_break" not in problems


@pytest.mark.unchecked_subtitles
def test_the_checker_reads_ttml_frame_times(tmp_path):
    ttml = tmp_path / "subtitles.ttml"
    ttml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter" '
        'ttp:frameRate="25" ttp:timeBase="media" xml:lang="en"><body><div>'
        '<p begin="25f" end="75f">The river was high<br/>that spring.</p>'
        '<p begin="77f" end="80f">Too short and too close.</p></div></body></tt>',
        encoding="utf-8",
    )
    problems = " ".join(check_file(ttml))
    assert "min_duration" in problems and "reading_speed" in problems and "frame_grid" not in problems


# --- shot changes ---------------------------------------------------------------------------------

def test_shot_changes_are_found_in_real_footage(tmp_path):
    from assetline.ffmpeg import run_ffmpeg
    from assetline.shots import shot_changes
    from helpers.footage import fetch

    root = fetch()
    cut = tmp_path / "cut.mp4"  # 1.2 s of Big Buck Bunny, then 1 s of bikes: one cut at 1.2 s
    graph = ("[0:v]trim=0:1.2,setpts=PTS-STARTPTS,scale=160:90,fps=25,setsar=1[a];"
             "[1:v]trim=0:1,setpts=PTS-STARTPTS,scale=160:90,fps=25,setsar=1[b];[a][b]concat=n=2:v=1[v]")  # fmt: skip
    run_ffmpeg(["-i", str(root / "bigbuckbunny.mp4"), "-i", str(root / "bikes.mp4"), "-filter_complex", graph,
                "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", str(cut)], cut)  # fmt: skip
    (found,) = shot_changes(cut)
    assert found == pytest.approx(1.2, abs=0.041)
    single = tmp_path / "single.mp4"
    run_ffmpeg(["-i", str(root / "bigbuckbunny.mp4"), "-t", "1", "-vf", "scale=160:-2", "-an", str(single)], single)
    assert shot_changes(single) == ()
    bad = tmp_path / "not-video.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(BadInputError, match="not-video.mp4"):
        shot_changes(bad)
