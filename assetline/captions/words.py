"""Per-language word lists and what they say about a break between two words; no planning here.

Word lists are data (`assetline/captions/lang/<code>.json`: en, es, fr, de, it, pt),
never code. From them each place between two words gets:
- a never-break rule, where one applies: determiner | noun, adjective | noun, first | last
  name, subject pronoun | verb, auxiliary, modal or negation | verb, verb | particle,
  preposition | object (fixed phrases such as "as soon as" are checked by the planner);
- a kind: after a sentence end, after other punctuation, before a conjunction, before a
  preposition or subordinator, plain.
A language without a list gets the neutral one (punctuation only).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

SENTENCE_END = 3
CLAUSE_END = 2
BEFORE_LINK = 1
PLAIN = 0

NEUTRAL = "neutral"
_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«([¿¡"
_PUNCTUATION = string.punctuation + "“”‘’«»…—–¿¡"
_LIST_KEYS = (
    "determiners", "prepositions", "conjunctions", "subordinators", "subject_pronouns", "auxiliaries",
    "negations", "particles", "adjectives", "list_conjunctions", "abbreviations", "first_person_singular",
)  # fmt: skip


@dataclass(frozen=True)
class WordList:
    """One language's word classes (lower case), from `lang/<code>.json`; `language` is "neutral" for none.

    Each class in `_LIST_KEYS` reads as an attribute (`words.determiners`), empty when
    the list has none; `function_words` are determiners, prepositions, conjunctions and
    subordinators together.
    """

    language: str
    classes: tuple[tuple[str, frozenset[str]], ...] = ()  # (class, words) for the keys of _LIST_KEYS
    fixed_phrases: tuple[tuple[str, ...], ...] = ()
    capitalised_nouns: bool = False  # German: every noun is capitalised, so two capitals are no name
    names: bool = False  # two capitalised words are a name (off for the neutral list)
    function_words: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        given = dict(self.classes)
        if unknown := set(given) - set(_LIST_KEYS):
            raise ValueError(f"unknown word classes: {sorted(unknown)}")
        for key in _LIST_KEYS:  # plain attributes: the planner reads them for every pair of words
            object.__setattr__(self, key, given.get(key, frozenset()))
        words = self.determiners | self.prepositions | self.conjunctions | self.subordinators
        object.__setattr__(self, "function_words", words)


def available_languages() -> tuple[str, ...]:
    """The languages with a word list, as codes."""
    folder = resources.files("assetline.captions") / "lang"
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


def language_code(language: str | None) -> str:
    """"en", "EN", "en-GB", "en_US" -> "en"; None or empty -> ""."""
    return (language or "").strip().lower().replace("_", "-").split("-")[0]


@cache
def word_list(language: str | None) -> WordList:
    """The word list for `language` (any case, a region tag is dropped); the neutral one when there is none."""
    code = language_code(language)
    if code not in available_languages():
        return WordList(NEUTRAL)
    raw = json.loads((resources.files("assetline.captions") / "lang" / f"{code}.json").read_text(encoding="utf-8"))
    return WordList(
        language=code,
        classes=tuple((key, frozenset(w.lower() for w in raw.get(key, ()))) for key in _LIST_KEYS),
        fixed_phrases=tuple(tuple(p.lower().split()) for p in raw.get("fixed_phrases", ())),
        capitalised_nouns=bool(raw.get("capitalised_nouns", False)),
        names=True,
    )


def core(text: str) -> str:
    """A word without the punctuation around it, lower case ("(Hello," -> "hello")."""
    return text.strip(_PUNCTUATION).lower().replace("’", "'")


def last_mark(text: str) -> str:
    return text.rstrip(_CLOSERS)[-1:]


def ends_sentence(text: str, words: WordList) -> bool:
    mark = last_mark(text)
    return mark in ("?", "!", "…") or (mark == "." and core(text) not in words.abbreviations)


def punctuated(text: str, words: WordList) -> bool:
    """Whether `text` ends with punctuation (an abbreviation's full stop does not count)."""
    mark = last_mark(text)
    if not mark or mark not in _PUNCTUATION:
        return False
    return not (mark == "." and core(text) in words.abbreviations)


def _capitalised(text: str) -> bool:
    letter = next((ch for ch in text if ch.isalpha()), "")
    return letter.isupper()


def never_break(before: str, after: str, words: WordList) -> str | None:
    """The never-break rule a break between `before` and `after` would violate, or None.

    Fixed phrases need more than two words: `CuePlanner` checks those.
    """
    if punctuated(before, words) or after[:1] in _OPENERS:
        return None
    b, a = core(before), core(after)
    if not b or not a:
        return None
    content_after = a not in words.function_words  # the next word is no determiner, preposition or conjunction
    if b in words.prepositions:
        return "preposition"
    if b in words.determiners and content_after:
        return "determiner"
    if b in words.negations and content_after:
        return "negation"
    if b in words.auxiliaries and content_after and a not in words.subject_pronouns:
        return "auxiliary"
    if b in words.subject_pronouns and content_after:
        return "pronoun"
    if a in words.particles and b not in words.function_words and b not in words.subject_pronouns:
        return "particle"
    if b in words.adjectives and content_after:
        return "adjective"
    if (
        words.names
        and not words.capitalised_nouns
        and _capitalised(before)
        and _capitalised(after)
        and b not in words.first_person_singular
        and a not in words.first_person_singular
    ):
        return "name"
    return None


def break_kind(before: str, after: str, words: WordList) -> str:
    """How a break between two words reads: sentence, clause, conjunction, preposition or plain."""
    if ends_sentence(before, words):
        return "sentence"
    if last_mark(before) in (",", ";", ":", "—", "–", "-") and punctuated(before, words):
        return "clause"
    a = core(after)
    if a in words.conjunctions:
        return "conjunction"
    if a in words.prepositions or a in words.subordinators:
        return "preposition"
    return "plain"


def break_quality(before: str, after: str, language: str = "en") -> int | None:
    """How well a line or cue break reads between two words; None where it must not fall.

    3 after a sentence end, 2 after other punctuation, 1 before a conjunction,
    preposition or subordinator, 0 elsewhere; None where a never-break rule applies
    (`never_break`: "the | house", "Anna | Smith", "will | be", "hang | up"...).
    """
    words = word_list(language)
    if never_break(before, after, words):
        return None
    return {"sentence": SENTENCE_END, "clause": CLAUSE_END, "plain": PLAIN}.get(
        break_kind(before, after, words), BEFORE_LINK
    )
