"""Cue timing on the frame grid: in/out frames, min/max duration, reading speed, gap chaining, shot changes.

Every time is a frame of the footage (for audio, of the recipe's fps), written
in whole milliseconds (`FrameClock.ms`: the frame's time, rounded). A rule that
holds in frames holds in the written file: the frame searches below compare the
written milliseconds, never the unrounded seconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from assetline.config import SubtitleOptions

_TOLERANCE_MS = 1e-6


def exact_fps(fps: float) -> float:
    """The NTSC rates as written (23.976, 29.97, 59.94...) as they are: 24000/1001, 30000/1001, 60000/1001."""
    for base in (24, 30, 48, 60, 120):
        ntsc = base * 1000 / 1001
        if abs(fps - ntsc) < 0.0015:
            return ntsc
    return float(fps)


def ceil_ms(seconds: float) -> int:
    """`seconds` in whole milliseconds, rounded up (never below 0)."""
    ms = math.ceil(seconds * 1000)
    if ms / 1000 < seconds:  # float rounding: never a millisecond before the time asked for
        ms += 1
    return max(ms, 0)


@dataclass(frozen=True)
class CueEnd:
    """Where a cue goes off (a frame) and the timing rules it could not meet there."""

    frame: int
    exceptions: tuple[str, ...]
    cuts_speech: bool  # goes off before its speech has ended (only where the next cue or max_duration forces it)


@dataclass(frozen=True)
class FrameClock:
    """The timing rules in frames for one frame rate, and the shot changes (frames) cues snap to."""

    fps: float
    gap: int  # min_gap_frames: between one cue's out-time and the next one's in-time
    close_under: int  # gap_close_frames: a gap shorter than this is closed to `gap` exactly
    shot_frames: int  # shot_change_frames: no in/out time this close to a cut unless on it
    min_duration: float
    max_duration: float
    max_chars_per_second: float
    cuts: tuple[int, ...] = ()

    @classmethod
    def for_rules(cls, rules: SubtitleOptions, fps: float, shot_changes: Sequence[float] = ()) -> FrameClock:
        """The clock for `rules` at `fps`; an fps that is not a positive number is a ValueError.

        `shot_changes` are seconds; those that are not finite or not positive are ignored.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        fps = exact_fps(fps)
        usable = (t for t in shot_changes if isinstance(t, (int, float)) and math.isfinite(t) and t > 0)
        cuts = sorted({round(t * fps) for t in usable})
        return cls(
            fps=fps,
            gap=rules.min_gap_frames,
            close_under=max(rules.gap_close_frames, rules.min_gap_frames + 1),
            shot_frames=rules.shot_change_frames,
            min_duration=rules.min_duration,
            max_duration=rules.max_duration,
            max_chars_per_second=rules.max_chars_per_second,
            cuts=tuple(cuts),
        )

    def ms(self, frame: int) -> int:
        """The written time of `frame`: its time in whole milliseconds."""
        return round(frame * 1000 / self.fps)

    def frame_at_or_after(self, seconds: float) -> int:
        """The first frame whose written time is not before `seconds`."""
        target = ceil_ms(seconds)
        frame = max(math.ceil(seconds * self.fps - 1e-9), 0)
        while self.ms(frame) < target:
            frame += 1
        while frame > 0 and self.ms(frame - 1) >= target:
            frame -= 1
        return frame

    def frames_for(self, start: int, seconds: float) -> int:
        """The first frame at least `seconds` (as written) after `start`."""
        target = self.ms(start) + seconds * 1000 - _TOLERANCE_MS
        frame = start + max(math.ceil(seconds * self.fps - 1e-9), 0)
        while self.ms(frame) < target:
            frame += 1
        while frame > start and self.ms(frame - 1) >= target:
            frame -= 1
        return frame

    def latest_end(self, start: int) -> int:
        """The last frame at most max_duration (as written) after `start`."""
        limit = self.ms(start) + self.max_duration * 1000 + _TOLERANCE_MS
        frame = start + math.floor(self.max_duration * self.fps + 1e-9)
        while self.ms(frame) > limit:
            frame -= 1
        while self.ms(frame + 1) <= limit:
            frame += 1
        return max(frame, start + 1)

    def near_cuts(self, low: int, high: int) -> tuple[int, ...]:
        """The cuts in [low, high]."""
        i = bisect_left(self.cuts, low)
        found = []
        while i < len(self.cuts) and self.cuts[i] <= high:
            found.append(self.cuts[i])
            i += 1
        return tuple(found)

    def off_cut(self, frame: int, allowed_offsets: tuple[int, ...] = (0,)) -> bool:
        """Whether `frame` keeps clear of every cut: on it (or at an allowed offset from it) or shot_frames away."""
        for cut in self.near_cuts(frame - self.shot_frames + 1, frame + self.shot_frames - 1 + max(allowed_offsets)):
            if frame - cut not in allowed_offsets and abs(frame - cut) < self.shot_frames:
                return False
        return True

    def clear_of_cuts(self, frame: int) -> int:
        """The first frame from `frame` on that keeps clear of the cuts (`frame` itself if none is near)."""
        if self.cuts and self.shot_frames:
            for candidate in range(frame, frame + 2 * self.shot_frames + 1):
                if self.off_cut(candidate):
                    return candidate
        return frame

    def start_frame(self, speech_start: float) -> tuple[int, bool]:
        """A cue's in-time for speech that starts at `speech_start`: the first frame not before it that
        keeps clear of the cuts (a cut just after the speech starts is snapped to, one just before is
        waited out); and whether no such frame is near (then the speech's own frame, a shot_change exception).
        """
        spoken = self.frame_at_or_after(speech_start)
        if not self.cuts or self.shot_frames == 0:
            return spoken, False
        for frame in range(spoken, spoken + 2 * self.shot_frames + 1):
            if self.off_cut(frame):
                return frame, False
        return spoken, True

    def end_frame(self, start: int, chars: int, speech_end: float, next_start: int | None) -> CueEnd:
        """A cue's out-time: its speech has ended, it has shown min_duration and long enough to read
        `chars` at max_chars_per_second, never past max_duration nor closer than `gap` to `next_start`;
        a gap under `close_under` is closed to `gap`; clear of the cuts (on one, or `gap` before it).

        Among the frames that may be chosen, the one with the fewest unmet rules (going off before the speech
        has ended counts as one), then the nearest the natural out-time.
        """
        limit = self.latest_end(start)
        if next_start is not None:
            limit = min(limit, next_start - self.gap)
        limit = max(limit, start + 1)  # one frame at least (the next cue then starts late)
        need_min = self.frames_for(start, self.min_duration)
        need_read = self.frames_for(start, chars / self.max_chars_per_second)
        spoken = self.frame_at_or_after(speech_end)
        natural = min(max(need_min, need_read, spoken, start + 1), limit)
        candidates = {natural, limit}
        if next_start is not None:
            candidates.update((next_start - self.gap, next_start - self.close_under))
        for cut in self.near_cuts(start - self.shot_frames, limit + self.shot_frames):
            candidates.update((cut, cut - self.gap, cut - self.shot_frames, cut + self.shot_frames))
        best: tuple | None = None
        for frame in sorted(candidates):
            if not start + 1 <= frame <= limit:
                continue
            unmet = []
            if frame < need_min:
                unmet.append("min_duration")
            if frame < need_read:
                unmet.append("reading_speed")
            if next_start is not None and self.gap < next_start - frame < self.close_under:
                unmet.append("gap_closing")
            if self.cuts and not self.off_cut(frame, (0, -self.gap)):
                unmet.append("shot_change")
            cuts_speech = frame < min(spoken, limit)
            key = (len(unmet) + cuts_speech, cuts_speech, abs(frame - natural), frame)
            if best is None or key < best[0]:
                best = (key, CueEnd(frame, tuple(unmet), cuts_speech))
        assert best is not None  # `natural` is always a candidate within bounds
        return best[1]
