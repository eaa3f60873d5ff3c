"""Real speech with known transcripts: Debian's Asterisk core sounds (CC-BY-SA-3.0), en, it and ru.

`make test-deps` fetches them (`tests/fetch_speech.sh`: `apt-get download` then `dpkg-deb -x`,
no install) into `tests/data/asterisk/`, which git ignores; `prompt()` fetches on first use when
they are missing. Each prompt is one WAV (8 kHz mono) and its transcript line from the docs of
the plain `asterisk-core-sounds-<lang>` package.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from helpers.media import REPO

ROOT = REPO / "tests" / "data" / "asterisk"
VOICES = {"en": "en_US_f_Allison", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}


@dataclass(frozen=True)
class Prompt:
    language: str
    name: str
    wav: Path
    text: str


def fetch() -> Path:
    """The extracted packages, fetched now if they are not here yet."""
    marker = ROOT / ".complete"
    if not marker.exists():
        subprocess.run(["bash", str(REPO / "tests" / "fetch_speech.sh"), str(ROOT)], check=True)
    return ROOT


@cache
def transcripts(language: str) -> dict[str, str]:
    doc = fetch() / "usr" / "share" / "doc" / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"
    lines: dict[str, str] = {}
    for raw in gzip.decompress(doc.read_bytes()).decode("utf-8-sig").splitlines():
        if raw.startswith(";") or ":" not in raw:
            continue
        name, _, text = raw.partition(":")
        lines[name.strip()] = text.strip()
    return lines


def prompt(language: str, name: str) -> Prompt:
    """One prompt, e.g. prompt("en", "demo-congrats") (about 30 s) or prompt("it", "demo-echotest")."""
    wav = fetch() / "usr" / "share" / "asterisk" / "sounds" / VOICES[language] / f"{name}.wav"
    return Prompt(language, name, wav, transcripts(language)[name])


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's word count.

    Both sides are normalised first: lower case, punctuation dropped, hyphens
    split words ("ill-disposed" = "ill disposed"), and "mr"/"mrs"/"dr" spelled
    out, "ё" read as "е", so only real recognition errors count.
    """
    ref, hyp = _normalised_words(reference), _normalised_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)


_SPELLED_OUT = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def _normalised_words(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("ё", "е")
    text = re.sub(r"[^\w\s']", " ", text)
    words = [w.strip("'") for w in text.split()]
    return [_SPELLED_OUT.get(w, w) for w in words if w]
