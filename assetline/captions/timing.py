"""Cue timing: whole milliseconds, the gap counted in frames, min/max duration and reading speed.

Times are rounded towards the rule (a start or end never a millisecond early),
so every rule that holds in seconds still holds in the written file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from assetline.config import SubtitleOptions


def ceil_ms(seconds: float) -> int:
    """`seconds` in whole milliseconds, rounded up (never below 0)."""
    ms = math.ceil(seconds * 1000)
    if ms / 1000 < seconds:  # float rounding: never a millisecond before the time asked for
        ms += 1
    return max(ms, 0)


def floor_ms(seconds: float) -> int:
    """`seconds` in whole milliseconds, rounded down."""
    ms = math.floor(seconds * 1000)
    if ms / 1000 > seconds:
        ms -= 1
    return ms


@dataclass(frozen=True)
class CueClock:
    """The timing rules on the millisecond grid for one frame rate."""

    gap_ms: int  # between one cue's end and the next one's start: min_gap_frames at this fps
    min_ms: int
    max_ms: int
    frame_ms: int  # the shortest cue shown: one frame
    max_chars_per_second: float

    @classmethod
    def for_rules(cls, rules: SubtitleOptions, fps: float) -> CueClock:
        """The clock for `rules` at `fps`; an fps that is not a positive number is a ValueError."""
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        max_ms = floor_ms(rules.max_duration)
        return cls(
            gap_ms=ceil_ms(rules.min_gap_frames / fps),
            min_ms=ceil_ms(rules.min_duration),
            max_ms=max_ms,
            frame_ms=min(ceil_ms(1 / fps), max_ms),
            max_chars_per_second=rules.max_chars_per_second,
        )


def can_stand_alone(chars: int, speech_start: float, next_start: float, rules: SubtitleOptions, gap: float) -> bool:
    """Whether a cue of `chars` characters can show long enough (min_duration, reading speed) before `next_start`."""
    need = max(rules.min_duration, chars / rules.max_chars_per_second)
    return next_start - gap >= speech_start + need


class CueTime(NamedTuple):
    """When a cue shows (milliseconds), and the timing rules it could not meet."""

    start_ms: int
    end_ms: int
    delayed_start: bool  # shown after its speech starts, to keep the gap
    under_min_duration: bool
    under_reading_time: bool


def time_cue(
    clock: CueClock,
    chars: int,
    speech_start: float,
    speech_end: float,
    next_start: float | None,
    previous_end_ms: int | None,
) -> CueTime:
    """Start and end of a cue of `chars` characters whose speech runs `speech_start`..`speech_end` (seconds).

    It starts with its speech (later only to keep the gap after `previous_end_ms`)
    and ends when its speech has ended, it has shown for min_duration and long
    enough to read, but never past max_duration nor less than the gap before
    `next_start` (the next cue's speech; None for the last cue). It shows for a
    frame at least, even where that delays the next cue.
    """
    spoken_ms = ceil_ms(speech_start)
    start = spoken_ms if previous_end_ms is None else max(spoken_ms, previous_end_ms + clock.gap_ms)
    reading_ms = math.ceil(chars * 1000 / clock.max_chars_per_second)
    end = min(max(ceil_ms(speech_end), start + clock.min_ms, start + reading_ms), start + clock.max_ms)
    if next_start is not None:
        end = min(end, ceil_ms(next_start) - clock.gap_ms)
    end = max(end, start + clock.frame_ms)  # the next cue then starts late (delayed_start)
    return CueTime(
        start_ms=start,
        end_ms=end,
        delayed_start=start > spoken_ms,
        under_min_duration=end - start < clock.min_ms,
        under_reading_time=end - start < reading_ms,
    )
