"""Glossary and forbidden terms: names the model should spell as the user does, and words a reviewer must see.

Plain functions over transcript segment records (`{"text", "words": [{"word", ...}]}`), no Prefect,
no model. A glossary term is restored where the model wrote it in another case or spacing
("asterisk" -> "Asterisk"), or, for a single word of five letters or more, where it wrote a
near miss (difflib ratio >= 0.85: "Osterisk" -> "Asterisk"). Every change is counted, so the
manifest says what the glossary did and which terms were never heard.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

FUZZY_RATIO = 0.85  # below this a near miss is left alone: "asterisks" -> "Asterisk" yes, "after" -> "Astor" no
FUZZY_MIN_LETTERS = 5

_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


@dataclass
class GlossaryReport:
    """What restoring the glossary's spelling changed: term -> times restored, near misses, terms never found."""

    restored: Counter = field(default_factory=Counter)
    near_misses: list[tuple[str, str]] = field(default_factory=list)  # (as the model wrote it, the term)
    found: set[str] = field(default_factory=set)

    def record(self, terms: Sequence[str]) -> dict[str, Any]:
        return {
            "terms": list(terms),
            "restored": dict(self.restored),
            "near_misses": [list(p) for p in self.near_misses],
            "not_heard": [t for t in terms if t not in self.found],
        }


def hotwords(terms: Sequence[str]) -> str | None:
    """The hint faster-whisper's `hotwords` takes (it is put in the decoder's prompt), or None for no terms."""
    return ", ".join(terms) if terms else None


def _split(token: str) -> tuple[str, str, str]:
    m = _CORE.match(token)
    assert m is not None  # the pattern matches any string
    return m.group(1), m.group(2), m.group(3)


def _fold(text: str) -> str:
    return text.casefold().replace("-", "")


def restore_spelling(segments: Iterable[dict[str, Any]], terms: Sequence[str], report: GlossaryReport | None = None) -> GlossaryReport:
    """Rewrite, in place, each word (and so each segment's text) that is a glossary term spelled otherwise."""
    report = report or GlossaryReport()
    split_terms = [(t, t.split()) for t in terms]
    for seg in segments:
        words = seg.get("words") or []
        if not words:
            continue
        changed = False
        for i in range(len(words)):
            for term, parts in split_terms:
                span = words[i : i + len(parts)]
                if len(span) < len(parts):
                    continue
                pieces = [_split(w["word"]) for w in span]
                cores = [p[1] for p in pieces]
                if [_fold(c) for c in cores] == [_fold(p) for p in parts]:
                    report.found.add(term)
                    if cores == parts:
                        continue
                    report.restored[term] += 1
                elif (
                    len(parts) == 1
                    and len(parts[0]) >= FUZZY_MIN_LETTERS
                    and len(cores[0]) >= FUZZY_MIN_LETTERS
                    and SequenceMatcher(None, cores[0].casefold(), parts[0].casefold()).ratio() >= FUZZY_RATIO
                ):
                    report.found.add(term)
                    report.near_misses.append((cores[0], term))
                    report.restored[term] += 1
                else:
                    continue
                for w, (lead, _, trail), part in zip(span, pieces, parts):
                    w["word"] = lead + part + trail
                changed = True
                break
        if changed:
            seg["text"] = "".join(w["word"] for w in words)
    return report


def forbidden_in(text: str, terms: Sequence[str]) -> list[str]:
    """The forbidden terms `text` contains, as whole words, in any case."""
    found = []
    for term in terms:
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(p) for p in term.split()) + r"(?!\w)"
        if re.search(pattern, text, re.IGNORECASE):
            found.append(term)
    return found
