"""Cue layout: where a line or cue breaks, and at what cost; the planner.

The word lists (`words`) say where a break must not fall and how each one reads;
here those readings get costs, with the shape of lines, fragments, lists and pauses.

`CuePlanner.plan` chooses cue and line breaks together over the whole text by dynamic
programming: the cost of a plan is the sum of its cues' costs (breaks, line shape,
fragments, pauses), and each rule a cue cannot meet (`cues.EXCEPTION_RULES`) costs
more than any layout, so no exception is taken where a compliant plan exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from assetline.captions.text import Token
from assetline.captions.timing import FrameClock
from assetline.captions.words import WordList, break_kind, core, last_mark, never_break, punctuated
from assetline.config import SubtitleOptions

# Costs (arbitrary units). An unmet rule outweighs any layout; a fragment outweighs any plain break.
EXCEPTION_COST = 100_000
FRAGMENT_COST = 3_000
CUE_COST = 40  # each cue: fewer, fuller cues where the rest is equal
LIST_COST = 600  # a cue break inside a list
PAUSE_IN_CUE_COST = 400  # a silence over long_pause inside a cue
SENTENCE_IN_CUE_COST = 60  # two sentences in one cue (a cue per sentence where each can stand alone)
SENTENCE_MID_LINE_COST = 100  # ... and one ends mid-line
SPILL_COST = 500  # a cue that ends one sentence and starts another it does not finish
EXTRA_LINE_COST = 30  # each line past two
# By kind of break: (as a cue break, as a line break).
_BREAK_COSTS = {
    "sentence": (0, 0),
    "clause": (60, 10),
    "conjunction": (120, 40),
    "preposition": (150, 50),
    "plain": (250, 100),
    "phrase": (350, 160),  # inside a noun phrase ("a console channel | driver")
}
_TOP_HEAVY_COST = 4  # per character the top line is longer than the bottom one
_BOTTOM_HEAVY_COST = 1  # per character the bottom line is longer (a little: bottom-heavy is preferred)
_FRAGMENT_CHARS = 20

@dataclass(frozen=True)
class PlannedCue:
    """Tokens a..b-1 as one cue, laid out in `lines`; the never-break rules it had to break (line or end)."""

    a: int
    b: int
    lines: tuple[str, ...]
    forced: int  # never-break rules broken by its line breaks and its end
    overlong: bool  # a line longer than max_chars_per_line (a single word)


class CuePlanner:
    """Chooses cue and line breaks for `tokens` under `rules` (times from `clock`), over the whole text."""

    def __init__(self, tokens: list[Token], rules: SubtitleOptions, clock: FrameClock, words: WordList) -> None:
        self.tokens = tokens
        self.rules = rules
        self.clock = clock
        self.words = words
        n = len(tokens)
        self.lengths = [len(t.text) for t in tokens]
        self.prefix = [0]
        for length in self.lengths:
            self.prefix.append(self.prefix[-1] + length)
        # Per break b (between tokens b-1 and b; index 0 unused): rule broken, kind, in a list, in a phrase.
        self.rule: list[str | None] = [None] * (n + 1)
        self.kind: list[str] = ["sentence"] * (n + 1)
        for b in range(1, n):
            before, after = tokens[b - 1].text, tokens[b].text
            self.rule[b] = never_break(before, after, words)
            self.kind[b] = break_kind(before, after, words)
        self._mark_fixed_phrases()
        self.in_list = self._lists()
        self._mark_noun_phrases()
        # Sentences: sentence_of[i], and each sentence's token range.
        self.sentence_start = [0] * n
        self.sentence_end = [n] * n
        start = 0
        for i in range(n):
            if i + 1 == n or self.kind[i + 1] == "sentence":
                for j in range(start, i + 1):
                    self.sentence_start[j], self.sentence_end[j] = start, i + 1
                start = i + 1
        # Speech: the latest end up to each token, and the silence before each.
        self.pause_before = [0.0] * n
        latest = tokens[0].end if tokens else 0.0
        for i in range(1, n):
            self.pause_before[i] = tokens[i].start - latest
            latest = max(latest, tokens[i].end)
        starts = [clock.start_frame(t.start) for t in tokens]
        self.start_frames = [frame for frame, _ in starts]
        self.start_unmet = [unmet for _, unmet in starts]
        self._lines_cache: dict[tuple[int, int, int], tuple[float, tuple[int, ...], int] | None] = {}

    # --- the break analysis --------------------------------------------------------------------------

    def _mark_fixed_phrases(self) -> None:
        cores = [core(t.text) for t in self.tokens]
        for phrase in self.words.fixed_phrases:
            size = len(phrase)
            for i in range(len(cores) - size + 1):
                if tuple(cores[i : i + size]) == phrase:
                    for b in range(i + 1, i + size):
                        if not punctuated(self.tokens[b - 1].text, self.words):
                            self.rule[b] = self.rule[b] or "fixed_phrase"

    def _lists(self) -> list[bool]:
        """in_list[b]: break b falls inside an enumeration ("the dial, answer, and hang up commands")."""
        n = len(self.tokens)
        inside = [False] * (n + 1)
        commas = [i for i in range(n - 1) if last_mark(self.tokens[i].text) == "," and self.kind[i + 1] == "clause"]
        groups: list[list[int]] = []
        for c in commas:
            previous = groups[-1][-1] if groups else None
            if previous is not None and c - previous <= 4 and "sentence" not in self.kind[previous + 1 : c + 1]:
                groups[-1].append(c)
            else:
                groups.append([c])
        for group in groups:
            last = group[-1]
            conj = next(
                (j for j in range(last + 1, min(last + 5, n))
                 if core(self.tokens[j].text) in self.words.list_conjunctions),  # fmt: skip
                None,
            )
            if conj is None:
                continue
            item = (group[1] - group[0]) if len(group) > 1 else (conj - last)
            if len(group) == 1 and not 1 <= conj - last <= 3:
                continue
            first = max(group[0] - max(item - 1, 0), self.sentence_start_of(group[0]))
            end = min(conj + max(item, 1), n - 1)
            for b in range(first + 1, end + 1):
                inside[b] = True
        return inside

    def sentence_start_of(self, i: int) -> int:
        j = i
        while j > 0 and self.kind[j] != "sentence":
            j -= 1
        return j

    def _mark_noun_phrases(self) -> None:
        """A determiner's noun phrase: up to three content words after it; breaks inside cost more."""
        words = self.words
        for i, token in enumerate(self.tokens):
            if core(token.text) not in words.determiners or punctuated(token.text, words):
                continue
            j = i + 1
            while j < len(self.tokens) and j - i <= 3:
                word = core(self.tokens[j].text)
                if word in words.function_words or word in words.auxiliaries or word in words.subject_pronouns:
                    break
                if j > i + 1 and self.kind[j] == "plain":
                    self.kind[j] = "phrase"
                if punctuated(self.tokens[j].text, words):
                    break
                j += 1

    # --- measures ------------------------------------------------------------------------------------

    def chars(self, a: int, b: int) -> int:
        """Characters of tokens a..b-1 on one line, spaces included."""
        return self.prefix[b] - self.prefix[a] + (b - a - 1)

    def _line_fits(self, a: int, b: int) -> bool:
        return b - a == 1 or self.chars(a, b) <= self.rules.max_chars_per_line

    def _line_break_cost(self, b: int) -> tuple[float, int]:
        """(cost, never-break rules broken) of a line break before token b."""
        cost = _BREAK_COSTS[self.kind[b]][1]
        return (cost + EXCEPTION_COST, 1) if self.rule[b] else (cost, 0)

    def _best_lines(self, a: int, b: int, count: int) -> tuple[float, tuple[int, ...], int] | None:
        """Tokens a..b-1 in exactly `count` lines: (cost, line starts after a, rules broken); None if impossible."""
        key = (a, b, count)
        if key in self._lines_cache:
            return self._lines_cache[key]
        best: tuple[float, tuple[int, ...], int] | None = None
        if count == 1:
            best = (0.0, (), 0) if self._line_fits(a, b) else None
        elif b - a >= count:
            for p in range(a + 1, b - count + 2):
                if not self._line_fits(a, p):
                    break
                rest = self._best_lines(p, b, count - 1)
                if rest is None:
                    continue
                cost, broken = self._line_break_cost(p)
                if count == 2:
                    top, bottom = self.chars(a, p), self.chars(p, b)
                    cost += _TOP_HEAVY_COST * max(top - bottom, 0) + _BOTTOM_HEAVY_COST * max(bottom - top, 0)
                total = (cost + rest[0], (p, *rest[1]), broken + rest[2])
                if best is None or total[0] < best[0]:
                    best = total
        self._lines_cache[key] = best
        return best

    def layout(self, a: int, b: int) -> tuple[float, tuple[int, ...], int] | None:
        """The best layout of tokens a..b-1: one line where it fits, else the cheapest in 2..max_lines."""
        one = self._best_lines(a, b, 1)
        if one is not None:
            return one
        best = None
        for count in range(2, self.rules.max_lines + 1):
            found = self._best_lines(a, b, count)
            if found is not None:
                found = (found[0] + EXTRA_LINE_COST * (count - 2), found[1], found[2])
                if best is None or found[0] < best[0]:
                    best = found
        return best

    def lines(self, a: int, breaks: tuple[int, ...], b: int) -> tuple[str, ...]:
        edges = (a, *breaks, b)
        return tuple(" ".join(t.text for t in self.tokens[p:q]) for p, q in zip(edges, edges[1:]))

    # --- the plan ------------------------------------------------------------------------------------

    def cue_cost(self, a: int, b: int) -> tuple[float, tuple[int, ...], int] | None:
        """Cost of tokens a..b-1 as one cue (with its end break), its line starts and rules broken; None if it
        cannot be one cue (it does not fit in max_lines, or its speech lasts longer than max_duration)."""
        tokens, rules, clock = self.tokens, self.rules, self.clock
        n = len(tokens)
        if b - a > 1 and max(t.end for t in tokens[a:b]) - tokens[a].start > rules.max_duration:
            return None
        laid = self.layout(a, b)
        if laid is None:
            return None
        cost, breaks, broken = laid
        cost += CUE_COST
        reading = self.chars(a, b) - len(breaks)  # spaces count, line breaks do not
        start = self.start_frames[a]
        end = clock.end_frame(start, reading, max(t.end for t in tokens[a:b]), self.start_frames[b] if b < n else None)
        unmet = len(end.exceptions) + self.start_unmet[a]
        if b - a == 1 and self.lengths[a] > rules.max_chars_per_line:
            unmet += 1
        cost += EXCEPTION_COST * unmet + 2_000 * end.cuts_speech
        if "reading_speed" in end.exceptions:  # the least short of the time it needs
            cost += 10 * (clock.frames_for(start, reading / clock.max_chars_per_second) - end.frame)
        # Inside the cue: long pauses, sentence ends.
        for i in range(a + 1, b):
            if self.pause_before[i] > rules.long_pause:
                cost += PAUSE_IN_CUE_COST
            if self.kind[i] == "sentence":
                cost += SENTENCE_IN_CUE_COST + (0 if i in breaks else SENTENCE_MID_LINE_COST)
            if self.in_list[i] and i in breaks:
                cost += _BREAK_COSTS["plain"][1]
        # Its end.
        if b < n:
            paused = self.pause_before[b] > rules.long_pause  # the speaker paused: a break as good as a full stop
            cost += _BREAK_COSTS[self.kind[b]][0] // (4 if paused else 1)
            if self.rule[b]:
                cost += EXCEPTION_COST
                broken += 1
            if self.kind[b] != "sentence" and self.sentence_start[b - 1] > a and not paused:
                cost += SPILL_COST
            if self.in_list[b]:
                cost += LIST_COST
            if self.kind[b] != "sentence" and not paused:
                left = self.chars(max(a, self.sentence_start[b - 1]), b)
                right = self.chars(b, self.sentence_end[b - 1])
                if min(left, right) < _FRAGMENT_CHARS:
                    cost += FRAGMENT_COST
        return cost, breaks, broken

    def plan(self) -> list[PlannedCue]:
        """The cheapest cues for the whole text (dynamic programming over the cue breaks)."""
        n = len(self.tokens)
        capacity = self.rules.max_lines * (self.rules.max_chars_per_line + 1)
        best: list[tuple[float, int, tuple[int, ...], int] | None] = [None] * (n + 1)
        best[0] = (0.0, 0, (), 0)
        for a in range(n):
            if best[a] is None:
                continue
            base = best[a][0]
            for b in range(a + 1, n + 1):
                if b - a > 1 and self.chars(a, b) > capacity:
                    break
                found = self.cue_cost(a, b)
                if found is None:
                    speech = max(t.end for t in self.tokens[a:b]) - self.tokens[a].start
                    if b - a > 1 and speech > self.rules.max_duration:
                        break  # longer cues only last longer
                    continue
                total = base + found[0]
                if best[b] is None or total < best[b][0]:
                    best[b] = (total, a, found[1], found[2])
        cues: list[PlannedCue] = []
        b = n
        while b > 0:
            entry = best[b]
            assert entry is not None  # a one-word cue is always possible
            _, a, breaks, broken = entry
            lines = self.lines(a, breaks, b)
            overlong = any(len(line) > self.rules.max_chars_per_line for line in lines)
            cues.append(PlannedCue(a, b, lines, broken, overlong))
            b = a
        return cues[::-1]
