"""Cue layout: where a line or a cue may break and how well it reads, words grouped into cues, cues into lines.

A break after punctuation reads best, then one before a linking word; never
after a determiner (it belongs with its noun) or between two capitalised words (a name).
"""

from __future__ import annotations

import math
import string

from assetline.captions.text import Token
from assetline.captions.timing import can_stand_alone
from assetline.config import SubtitleOptions

SENTENCE_END = 3
CLAUSE_END = 2
BEFORE_LINK = 1
PLAIN = 0
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
        return SENTENCE_END
    mark = _last_mark(before)
    if mark in (",", ";", ":", "—", "–"):
        return CLAUSE_END
    punctuated = bool(mark) and mark in _PUNCTUATION and not (mark == "." and _core(before) in _ABBREVIATIONS)
    if not punctuated and _core(before) in DETERMINERS:
        return None
    if not punctuated and _name_like(before) and _name_like(after):
        return None
    if _core(after) in LINKING_WORDS:
        return BEFORE_LINK
    return PLAIN


class CuePlanner:
    """Groups tokens into cues and lays each cue out in lines (rules as given, breaks precomputed).

    `gap` is the gap between cues in seconds (on the millisecond grid); `long_pause`
    the silence after which a new cue starts where a break is allowed.
    """

    def __init__(self, tokens: list[Token], rules: SubtitleOptions, gap: float, long_pause: float) -> None:
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
        return can_stand_alone(self.chars(a, b), self.tokens[a].start, self.tokens[b].start, self.rules, self.gap)

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
                or (self.quality[j] == SENTENCE_END and self.stands_alone(a, j))
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
