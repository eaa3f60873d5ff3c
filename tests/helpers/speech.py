"""Real speech with known transcripts: Debian's Asterisk core sounds (CC-BY-SA-3.0), en, it and ru.

`make test-deps` fetches them (`tests/fetch_speech.sh`: `apt-get download` then `dpkg-deb -x`,
no install) into `tests/data/asterisk/`, which git ignores; `prompt()` fetches on first use when
they are missing. Each prompt is one WAV (8 kHz mono) and its transcript line from the docs of
the plain `asterisk-core-sounds-<lang>` package.
"""

from __future__ import annotations

import gzip
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
