"""Cues from timed words: the records, and `build_cues` (words and rules in, cues and unmet rules out).

Deterministic and free of I/O: text from `text`, breaks from `layout`, times from `timing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from assetline.captions.layout import CuePlanner
from assetline.captions.words import NEUTRAL, word_list
from assetline.captions.text import display_tokens
from assetline.captions.timing import FrameClock
from assetline.config import SubtitleOptions
from assetline.transcript import Word

# The rules a cue may be unable to meet, and why. Every other rule (line count, max duration,
# at least the gap between cues, never before its speech, times on the frame grid) always holds.
EXCEPTION_RULES: dict[str, str] = {
    "reading_speed": "speech faster than max_chars_per_second: the cue keeps its speech timing, "
    "as it cannot run into the next cue or past max_duration",
    "min_duration": "the next cue's speech starts too soon (less than min_duration plus the gap) after this one's",
    "line_length": "a single word longer than max_chars_per_line, on a line of its own",
    "forced_break": "a line or cue break between words that belong together (article and noun, auxiliary and "
    "verb, a name...): no other break fits the cue",
    "delayed_start": "shown after its speech starts, to keep the gap: the previous cue's speech began "
    "less than a frame plus the gap earlier",
    "gap_closing": "a gap under gap_close_frames left open: closing it would run past max_duration",
    "shot_change": "an in- or out-time within shot_change_frames of a shot change and not on it: "
    "no time clear of the cut keeps the other rules",
}


class SubtitleCue(NamedTuple):
    start: float  # seconds, whole milliseconds (a frame's time, rounded)
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


@dataclass(frozen=True)
class CueBuild:
    """Cues, and for each rule in `EXCEPTION_RULES` the indices of the cues that could not meet it.

    `word_list`: the language whose word list laid the cues out, or "neutral" (punctuation
    only) for a language without one; `fps`: the frame grid the times are on.
    """

    cues: tuple[SubtitleCue, ...]
    exceptions: dict[str, tuple[int, ...]]
    word_list: str = NEUTRAL
    fps: float = 25.0

    def counts(self) -> dict[str, int]:
        return {rule: len(self.exceptions.get(rule, ())) for rule in EXCEPTION_RULES}


def build_cues(
    words: Sequence[Word],
    rules: SubtitleOptions,
    fps: float | None = None,
    *,
    language: str = "en",
    shot_changes: Sequence[float] = (),
) -> CueBuild:
    """Cues for timed words under broadcast rules; deterministic, no I/O.

    Args:
        words: in spoken order, as `Transcript.words()` gives them; text is
            normalised (leading space stripped, whitespace collapsed), empty words
            dropped, and a piece that starts with punctuation and no space ("-disposed")
            joined to the word before it.
        rules: line width and count, min/max duration, max reading speed, gap and
            gap closing in frames, long_pause, shot_change_frames.
        fps: the frame grid every time is on; None uses `rules.fps` (audio has no frames).
        language: whose word list says where breaks may fall (`words.word_list`); a
            language without one gets the neutral list (`CueBuild.word_list` says which).
        shot_changes: the footage's cuts, in seconds (`assetline.shots.shot_changes`).

    Cue and line breaks are planned over the whole text (`layout.CuePlanner`). A cue
    starts on the first frame of its speech (or on a cut just after it, or clear of one
    just before) and ends when its speech has ended, it has shown for min_duration and
    long enough to read at max_chars_per_second, never past max_duration nor closer than
    min_gap_frames to the next cue; a shorter gap than gap_close_frames is closed to
    min_gap_frames. Rules a cue cannot meet are counted in `CueBuild.exceptions` (see
    `EXCEPTION_RULES`). A bad fps or a word without usable times is a ValueError.
    """
    fps = rules.fps if fps is None else fps
    clock = FrameClock.for_rules(rules, fps, shot_changes)
    listed = word_list(language)
    exceptions: dict[str, list[int]] = {rule: [] for rule in EXCEPTION_RULES}
    tokens = display_tokens(words)
    if not tokens:
        return CueBuild((), {rule: () for rule in EXCEPTION_RULES}, listed.language, clock.fps)

    planner = CuePlanner(tokens, rules, clock, listed)
    plan = planner.plan()
    frames: list[tuple[int, int]] = []
    previous_end: int | None = None
    for index, cue in enumerate(plan):
        start = planner.start_frames[cue.a]
        if previous_end is not None and start < previous_end + clock.gap:
            start = clock.clear_of_cuts(previous_end + clock.gap)
            exceptions["delayed_start"].append(index)
        following = planner.start_frames[cue.b] if cue.b < len(tokens) else None
        if following is not None:
            following = max(following, start + 1 + clock.gap)  # it starts late (delayed_start) if it must
        reading = sum(len(line) for line in cue.lines)
        end = clock.end_frame(start, reading, max(t.end for t in tokens[cue.a : cue.b]), following)
        if cue.overlong:
            exceptions["line_length"].append(index)
        if cue.forced:
            exceptions["forced_break"].append(index)
        frames.append((start, end.frame))
        previous_end = end.frame
    # The timing rules a cue could not meet, read off the times it got.
    for index, (cue, (start, end)) in enumerate(zip(plan, frames)):
        reading = sum(len(line) for line in cue.lines)
        if end < clock.frames_for(start, rules.min_duration):
            exceptions["min_duration"].append(index)
        if end < clock.frames_for(start, reading / rules.max_chars_per_second):
            exceptions["reading_speed"].append(index)
        if index + 1 < len(frames) and clock.gap < frames[index + 1][0] - end < clock.close_under:
            exceptions["gap_closing"].append(index)
        if not (clock.off_cut(start) and clock.off_cut(end, (0, -clock.gap))):
            exceptions["shot_change"].append(index)
    cues = [
        SubtitleCue(clock.ms(start) / 1000, clock.ms(end) / 1000, cue.lines) for cue, (start, end) in zip(plan, frames)
    ]
    return CueBuild(
        tuple(cues), {rule: tuple(found) for rule, found in exceptions.items()}, listed.language, clock.fps
    )
