"""Subtitles from word timings: cues built under broadcast timing rules, written as SRT and WebVTT.

`build_cues` is the pure part (words and rules in, cues and the rules it could
not meet out); `write_subtitles` renders cues safely through pysubs2; the
`subtitles` task reads `transcript.json` and returns one `StepRecord` per file.
"""

from __future__ import annotations

import math
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pysubs2
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from assetline.config import SubtitleOptions
from assetline.errors import BadInputError
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.storage import write_atomically
from assetline.tasks._common import package_version
from assetline.transcript import Transcript, Word

SRT_NAME = "subtitles.srt"
VTT_NAME = "subtitles.vtt"


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

# Line and cue breaks. A break after punctuation reads best, then one before a
# linking word; never after a determiner (it belongs with its noun) or between
# two capitalised words (a name).
_SENTENCE_END = 3
_CLAUSE_END = 2
_BEFORE_LINK = 1
_PLAIN = 0
_BREAK_BONUS = 60  # cost units (squared characters) a break of quality 1 is worth in line balance

DETERMINERS = frozenset(
    "a an the this that these those my your his her its our their some any no every each another".split()
)
LINKING_WORDS = frozenset(
    """and but or nor so yet because although though while whereas if unless until when where which who
    whose whom than as like with without within of to in into onto on at for from by about over under after
    before between through during against among around across behind beyond towards toward upon""".split()
)
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs etc e.g i.e mt".split())
_FIRST_PERSON = frozenset("i i'm i've i'll i'd i’m i’ve i’ll i’d".split())
_CLOSERS = "\"'”’»)]"
_PUNCTUATION = string.punctuation + "“”‘’«»…—–"


# SubRip times end at 99:59:59.999; pysubs2 would silently clamp later ones. A word must end
# early enough for its cue (up to max_duration, 30 s at most) to fit.
MAX_WORD_SECONDS = 359_999.999 - 60


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


class _Token(NamedTuple):
    text: str
    start: float
    end: float


def normalise_text(text: str) -> str:
    """Whisper's leading space and any run of whitespace (newlines too) become nothing or one space.

    Other control characters are dropped: they could end an SRT cue early or hide text.
    A lone surrogate (a JSON `\\ud800` escape in a transcript) cannot be written as
    UTF-8: it becomes U+FFFD, the replacement character.
    """
    kept = "".join(
        "\ufffd" if unicodedata.category(ch) == "Cs" else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) != "Cc"
    )
    return " ".join(kept.split())


def _core(text: str) -> str:
    return text.strip(_PUNCTUATION).lower()


def _last_mark(text: str) -> str:
    return text.rstrip(_CLOSERS)[-1:]


def _ends_sentence(text: str) -> bool:
    mark = _last_mark(text)
    return mark in ("?", "!", "…") or (mark == "." and _core(text) not in _ABBREVIATIONS)


def _name_like(text: str) -> bool:
    letter = next((ch for ch in text if ch.isalpha()), "")
    return letter.isupper() and _core(text) not in _FIRST_PERSON


def break_quality(before: str, after: str) -> int | None:
    """How well a line or cue break reads between two words; None where it must not fall.

    3 after a sentence end, 2 after other punctuation, 1 before a conjunction or
    preposition, 0 elsewhere; None after a determiner ("the | house") or between
    two capitalised words when the second does not start a sentence ("Anna | Smith").
    """
    if _ends_sentence(before):
        return _SENTENCE_END
    mark = _last_mark(before)
    if mark in (",", ";", ":", "—", "–"):
        return _CLAUSE_END
    punctuated = bool(mark) and mark in _PUNCTUATION and not (mark == "." and _core(before) in _ABBREVIATIONS)
    if not punctuated and _core(before) in DETERMINERS:
        return None
    if not punctuated and _name_like(before) and _name_like(after):
        return None
    if _core(after) in LINKING_WORDS:
        return _BEFORE_LINK
    return _PLAIN


def _tokens(words: Sequence[Word]) -> list[_Token]:
    """Display tokens: normalised words, a word that starts with punctuation and no space joined to the last.

    Whisper puts a space before each word; a piece without one continues the
    previous word ("ill" + "-disposed", "don" + "'t") and is never broken from it.
    """
    tokens: list[_Token] = []
    for word in words:
        try:
            start, end = float(word.start), float(word.end)
        except (TypeError, ValueError):
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end) and isinstance(word.text, str)):
            raise ValueError(f"word {word.text!r} at {word.start!r}..{word.end!r} is not a timed text")
        if max(start, end) > MAX_WORD_SECONDS:
            raise ValueError(
                f"word {word.text!r} at {word.start!r}..{word.end!r} is later than a subtitle file can hold "
                f"(SubRip ends at 99:59:59.999)"
            )
        text = normalise_text(word.text)
        if not text:
            continue
        if tokens and not word.text[0].isspace() and unicodedata.category(text[0]).startswith("P"):
            last = tokens[-1]
            tokens[-1] = _Token(last.text + text, last.start, max(last.end, end))
        else:
            tokens.append(_Token(text, start, end))
    return tokens


def _ceil_ms(seconds: float) -> int:
    ms = math.ceil(seconds * 1000)
    if ms / 1000 < seconds:  # float rounding: never a millisecond before the time asked for
        ms += 1
    return max(ms, 0)


def _floor_ms(seconds: float) -> int:
    ms = math.floor(seconds * 1000)
    if ms / 1000 > seconds:
        ms -= 1
    return ms


class _Planner:
    """Groups words into cues and lays each cue out in lines (rules as given, breaks precomputed)."""

    def __init__(self, tokens: list[_Token], rules: SubtitleOptions, gap: float, long_pause: float) -> None:
        self.tokens = tokens
        self.rules = rules
        self.gap = gap
        self.long_pause = long_pause
        self.lengths = [len(t.text) for t in tokens]
        self.prefix = [0]
        for length in self.lengths:
            self.prefix.append(self.prefix[-1] + length)
        # quality[b]: the break before token b (b >= 1); quality[0] is never used.
        self.quality: list[int | None] = [None] + [
            break_quality(tokens[b - 1].text, tokens[b].text) for b in range(1, len(tokens))
        ]

    def chars(self, a: int, b: int) -> int:
        """Characters of tokens a..b-1 on one line, spaces included."""
        return self.prefix[b] - self.prefix[a] + (b - a - 1)

    def line_count(self, a: int, b: int) -> int | None:
        """Fewest lines tokens a..b-1 take breaking only where allowed; None if a glued run is too long.

        Greedy filling of the unbreakable runs is optimal for the count; a run
        that is one overlong word takes a line of its own.
        """
        width = self.rules.max_chars_per_line
        runs: list[tuple[int, int]] = []  # (characters, words)
        for i in range(a, b):
            if i > a and self.quality[i] is None:
                chars, count = runs[-1]
                runs[-1] = (chars + 1 + self.lengths[i], count + 1)
            else:
                runs.append((self.lengths[i], 1))
        lines, current = 0, width + 1
        for chars, count in runs:
            if chars > width and count > 1:
                return None
            if current + 1 + chars <= width:
                current += 1 + chars
            else:
                lines, current = lines + 1, chars
        return lines

    def fits(self, a: int, b: int) -> bool:
        count = self.line_count(a, b)
        return count is not None and count <= self.rules.max_lines

    def stands_alone(self, a: int, b: int) -> bool:
        """Whether tokens a..b-1 can be shown long enough before the next cue's speech."""
        need = max(self.rules.min_duration, self.chars(a, b) / self.rules.max_chars_per_second)
        return self.tokens[b].start - self.gap >= self.tokens[a].start + need

    def split_point(self, a: int, j: int) -> int:
        """Where to end the cue a.. when token j does not fit: the best allowed break in (a, j].

        Break quality first, then how full the cue is; breaks leaving the cue
        under a third full are taken only when nothing else is allowed. With no
        allowed break at all the cue ends before j (a forced break).
        """
        total = self.chars(a, j)
        allowed = [k for k in range(a + 1, j + 1) if self.quality[k] is not None]
        if not allowed:
            return j
        full = [k for k in allowed if self.chars(a, k) * 3 >= total]
        return max(full or allowed, key=lambda k: (self.quality[k], self.chars(a, k)))

    def groups(self) -> tuple[list[tuple[int, int]], set[int]]:
        """Token ranges [a, b), one per cue, and the indices of cues that end at a forced break."""
        tokens, rules = self.tokens, self.rules
        groups: list[tuple[int, int]] = []
        forced: set[int] = set()
        a, j = 0, 1
        speech_end = tokens[0].end
        while j < len(tokens):
            word = tokens[j]
            too_long = max(speech_end, word.end) - tokens[a].start > rules.max_duration
            if too_long or not self.fits(a, j + 1):
                k = self.split_point(a, j)
                if self.quality[k] is None:
                    forced.add(len(groups))
                groups.append((a, k))
                a = k
                if a == j:
                    j += 1
                speech_end = max(t.end for t in tokens[a:j])
                continue
            if self.quality[j] is not None and (
                word.start - speech_end > self.long_pause
                or (self.quality[j] == _SENTENCE_END and self.stands_alone(a, j))
            ):
                groups.append((a, j))
                a, speech_end = j, word.end
            else:
                speech_end = max(speech_end, word.end)
            j += 1
        groups.append((a, len(tokens)))
        return groups, forced

    def lines(self, a: int, b: int) -> tuple[str, ...]:
        """Tokens a..b-1 in the fewest lines, balanced, preferring the better breaks."""
        count = self.line_count(a, b)
        assert count is not None  # every group fits: grouping checked it
        width = self.rules.max_chars_per_line
        n = b - a
        inf = (math.inf, 0)
        # best[l][i]: (cost, previous break) for the first i tokens in l lines
        best = [[inf] * (n + 1) for _ in range(count + 1)]
        best[0][0] = (0.0, 0)
        for lines_used in range(1, count + 1):
            for i in range(1, n + 1):
                if i < n and self.quality[a + i] is None:
                    continue
                for p in range(i - 1, -1, -1):
                    chars = self.chars(a + p, a + i)
                    if chars > width and i - p > 1:
                        break  # longer lines only get longer
                    prev_cost = best[lines_used - 1][p][0]
                    if prev_cost == math.inf:
                        continue
                    bonus = _BREAK_BONUS * self.quality[a + p] if p > 0 else 0  # type: ignore[operator]
                    cost = prev_cost + chars * chars - bonus
                    if cost < best[lines_used][i][0]:
                        best[lines_used][i] = (cost, p)
        breaks, i = [], n
        for lines_used in range(count, 0, -1):
            p = best[lines_used][i][1]
            breaks.append((p, i))
            i = p
        return tuple(" ".join(t.text for t in self.tokens[a + p : a + q]) for p, q in reversed(breaks))


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
    """
    fps = rules.fps if fps is None else fps
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    exceptions: dict[str, list[int]] = {rule: [] for rule in EXCEPTION_RULES}
    tokens = _tokens(words)
    if not tokens:
        return CueBuild((), {rule: () for rule in EXCEPTION_RULES})

    gap_ms = _ceil_ms(rules.min_gap_frames / fps)
    max_ms = _floor_ms(rules.max_duration)
    min_ms = _ceil_ms(rules.min_duration)
    frame_ms = min(_ceil_ms(1 / fps), max_ms)  # the shortest cue shown: one frame
    planner = _Planner(tokens, rules, gap_ms / 1000, rules.long_pause)
    groups, forced = planner.groups()

    cues: list[SubtitleCue] = []
    previous_end: int | None = None
    for index, (a, b) in enumerate(groups):
        lines = planner.lines(a, b)
        chars = planner.chars(a, b)
        speech_start = _ceil_ms(tokens[a].start)
        start = speech_start if previous_end is None else max(speech_start, previous_end + gap_ms)
        if start > speech_start:
            exceptions["delayed_start"].append(index)
        reading_ms = math.ceil(chars * 1000 / rules.max_chars_per_second)
        speech_end = _ceil_ms(max(t.end for t in tokens[a:b]))
        end = min(max(speech_end, start + min_ms, start + reading_ms), start + max_ms)
        if b < len(tokens):
            end = min(end, _ceil_ms(tokens[b].start) - gap_ms)
        end = max(end, start + frame_ms)  # the next cue then starts late (delayed_start)
        if end - start < min_ms:
            exceptions["min_duration"].append(index)
        if end - start < reading_ms:
            exceptions["reading_speed"].append(index)
        if any(len(line) > rules.max_chars_per_line for line in lines):
            exceptions["line_length"].append(index)
        if index in forced:
            exceptions["forced_break"].append(index)
        cues.append(SubtitleCue(start / 1000, end / 1000, lines))
        previous_end = end
    return CueBuild(tuple(cues), {rule: tuple(found) for rule, found in exceptions.items()})


# pysubs2 keeps cue text in SubStation form, where {...} is an override block and
# a backslash starts \N, \h; players read {\an8} and <i> in SRT as styling too.
# Transcript text is shown as text: braces and backslashes become harmless
# look-alikes, and each format's own markup characters are neutralised.
_SUBSTATION_SAFE = {"{": "(", "}": ")", "\\": "/"}
_SRT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "<": "‹", ">": "›"})  # SRT has no escapes
_VTT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def write_subtitles(cues: Sequence[SubtitleCue], srt_path: Path, vtt_path: Path) -> None:
    """Write `cues` as SubRip and WebVTT, each atomically; no cues gives valid empty files.

    The SRT is empty (zero cues); the WebVTT holds only its `WEBVTT` header.
    """
    for path, fmt, table in ((srt_path, "srt", _SRT_SAFE), (vtt_path, "vtt", _VTT_SAFE)):
        subs = pysubs2.SSAFile()
        for cue in cues:
            text = r"\N".join(line.translate(table) for line in cue.lines)
            subs.append(pysubs2.SSAEvent(start=round(cue.start * 1000), end=round(cue.end * 1000), text=text))
        write_atomically(path, subs.to_string(fmt).encode("utf-8"))


def _read_transcript(path: Path) -> Transcript:
    try:
        transcript = Transcript.model_validate_json(path.read_bytes())
        transcript.words()  # every word has its fields
    except OSError as exc:
        raise BadInputError(path, f"cannot read transcript: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise BadInputError(path, f"not a transcript: {exc.errors()[0]['msg']}") from None
    except (KeyError, TypeError, AttributeError):
        raise BadInputError(path, "not a transcript: each word needs start, end and word") from None
    return transcript


@task(name="subtitles", cache_policy=NO_CACHE, persist_result=False)
def subtitles(
    transcript_path: Path,
    dest_dir: Path,
    options: SubtitleOptions = SubtitleOptions(),
    fps: float | None = None,
) -> list[StepRecord]:
    """Subtitle cues from `transcript.json` into `dest_dir/subtitles.srt` and `dest_dir/subtitles.vtt`.

    Args:
        transcript_path: a `Transcript` as JSON; no words (silence) gives empty subtitle files.
        dest_dir: folder both files are written to.
        options: the broadcast rules (defaults: 42 characters a line, 2 lines,
            5/6 s to 7 s, 17 characters a second, 2 frames between cues).
        fps: the media's frame rate for the gap; None uses `options.fps`.

    Returns one StepRecord per file (SRT first), with the rules used, the cue
    count and how many cues could not meet each rule.
    """
    started = utc_now()
    transcript = _read_transcript(transcript_path)
    try:
        build = build_cues(transcript.words(), options, fps)
    except ValueError as exc:
        raise BadInputError(transcript_path, str(exc)) from None
    write_subtitles(build.cues, dest_dir / SRT_NAME, dest_dir / VTT_NAME)
    ended = utc_now()
    parameters = {
        **options.model_dump(exclude={"enabled"}),
        "fps": options.fps if fps is None else fps,
        "cues": len(build.cues),
        "exceptions": build.counts(),
        "language": transcript.language,
        "transcript_model": transcript.model.name,
    }
    tool = ToolRef(name="pysubs2", version=package_version("pysubs2"))
    # The rules here are conventional, but every word shown was written by the
    # speech model: the text is trained-algorithmic media, disclosed as such even
    # when a manifest holds this step alone. The model ran in `transcribe`, so none here.
    return [
        StepRecord(
            name="subtitles",
            tool=tool,
            model=None,
            parameters=parameters,
            started_at=started,
            ended_at=ended,
            digital_source_type="trainedAlgorithmicMedia",
            output=output,
        )
        for output in (SRT_NAME, VTT_NAME)
    ]
