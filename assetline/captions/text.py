"""Transcript words as subtitle text: normalised, checked times, pieces without a space glued to their word."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

from assetline.transcript import Word

# SubRip times end at 99:59:59.999; pysubs2 would silently clamp later ones. A word must end
# early enough for its cue (up to max_duration, 30 s at most) to fit.
MAX_WORD_SECONDS = 359_999.999 - 60


class Token(NamedTuple):
    """A word as shown: normalised text, and the speech it covers in seconds."""

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


def display_tokens(words: Sequence[Word]) -> list[Token]:
    """Display tokens: normalised words, a word that starts with punctuation and no space joined to the last.

    Whisper puts a space before each word; a piece without one continues the
    previous word ("ill" + "-disposed", "don" + "'t") and is never broken from it.
    A word without finite times, or later than a subtitle file can hold, is a ValueError.
    """
    tokens: list[Token] = []
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
            tokens[-1] = Token(last.text + text, last.start, max(last.end, end))
        else:
            tokens.append(Token(text, start, end))
    return tokens
