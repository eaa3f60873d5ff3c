"""Cues from timed words: the records, and `build_cues` (words and rules in, cues and unmet rules out).

Deterministic and free of I/O: text from `text`, breaks from `layout`, times from `timing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from assetline.captions.layout import CuePlanner
from assetline.captions.text import display_tokens
from assetline.captions.timing import CueClock, time_cue
from assetline.config import SubtitleOptions
from assetline.transcript import Word

# The rules a cue may be unable to meet, and why. Every other rule (line count,
# max duration, the gap between cues, never before its speech) always holds.
EXCEPTION_RULES: dict[str, str] = {
    "reading_speed": "speech faster than max_chars_per_second: the cue keeps its speech timing, "
    "as it cannot run into the next cue or past max_duration",
    "min_duration": "the next cue's speech starts too soon (less than min_duration plus the gap) after this one's",
    "line_length": "a single word longer than max_chars_per_line, on a line of its own",
    "forced_break": "the cue ends after an article or inside a name: no allowed break fits the cue",
    "delayed_start": "shown after its speech starts, to keep the gap: the previous cue's speech began "
    "less than a frame plus the gap earlier",
}


class SubtitleCue(NamedTuple):
    start: float  # seconds, whole milliseconds
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


@dataclass(frozen=True)
class CueBuild:
    """Cues, and for each rule in `EXCEPTION_RULES` the indices of the cues that could not meet it."""

    cues: tuple[SubtitleCue, ...]
    exceptions: dict[str, tuple[int, ...]]

    def counts(self) -> dict[str, int]:
        return {rule: len(self.exceptions.get(rule, ())) for rule in EXCEPTION_RULES}


def build_cues(
    words: Sequence[Word],
    rules: SubtitleOptions,
    fps: float | None = None,
) -> CueBuild:
    """Cues for timed words under broadcast rules; deterministic, no I/O.

    Args:
        words: in spoken order, as `Transcript.words()` gives them; text is
            normalised (leading space stripped, whitespace collapsed), empty words
            dropped, and a piece that starts with punctuation and no space ("-disposed")
            joined to the word before it.
        rules: line width and count, min/max duration, max reading speed, gap in frames.
        fps: frame rate the gap is counted in; None uses `rules.fps` (audio has no frames).
        (rules.long_pause: silence, in seconds, after which a new cue starts where a break is allowed.)

    A cue starts when its first word does (later only to keep the gap, counted as
    "delayed_start") and ends when its speech has ended, it has shown for
    min_duration and long enough to read at max_chars_per_second, but never past
    max_duration nor less than the gap before the next cue's speech. Rules a cue
    cannot meet are counted in `CueBuild.exceptions` (see `EXCEPTION_RULES`).
    A bad fps or a word without usable times is a ValueError.
    """
    clock = CueClock.for_rules(rules, rules.fps if fps is None else fps)
    exceptions: dict[str, list[int]] = {rule: [] for rule in EXCEPTION_RULES}
    tokens = display_tokens(words)
    if not tokens:
        return CueBuild((), {rule: () for rule in EXCEPTION_RULES})

    planner = CuePlanner(tokens, rules, clock.gap_ms / 1000, rules.long_pause)
    groups, forced = planner.groups()
    cues: list[SubtitleCue] = []
    previous_end: int | None = None
    for index, (a, b) in enumerate(groups):
        lines = planner.lines(a, b)
        timed = time_cue(
            clock,
            planner.chars(a, b),
            speech_start=tokens[a].start,
            speech_end=max(t.end for t in tokens[a:b]),
            next_start=tokens[b].start if b < len(tokens) else None,
            previous_end_ms=previous_end,
        )
        if timed.delayed_start:
            exceptions["delayed_start"].append(index)
        if timed.under_min_duration:
            exceptions["min_duration"].append(index)
        if timed.under_reading_time:
            exceptions["reading_speed"].append(index)
        if any(len(line) > rules.max_chars_per_line for line in lines):
            exceptions["line_length"].append(index)
        if index in forced:
            exceptions["forced_break"].append(index)
        cues.append(SubtitleCue(timed.start_ms / 1000, timed.end_ms / 1000, lines))
        previous_end = timed.end_ms
    return CueBuild(tuple(cues), {rule: tuple(found) for rule, found in exceptions.items()})
