"""Transcripts: timed words and segments, as faster-whisper gives them and subtitles consume them.

Small immutable records inside; `Transcript` (pydantic) is what `transcript.json` holds.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class Word(NamedTuple):
    start: float  # seconds from the start of the media
    end: float
    text: str  # as the model wrote it, usually with a leading space
    probability: float = 1.0


class Segment(NamedTuple):
    start: float
    end: float
    text: str
    words: tuple[Word, ...]


class TranscriptModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str


def _words(segments: list[dict[str, Any]]) -> list[Word]:
    return [Word(w["start"], w["end"], w["word"], w.get("probability", 1.0)) for seg in segments for w in seg.get("words", [])]


class WindowLanguage(BaseModel):
    """The language heard in one window of the sound (None: no speech in it)."""

    model_config = ConfigDict(extra="forbid")

    start: float
    end: float
    speech_seconds: float  # after voice activity detection
    language: str | None
    probability: float | None


class Translation(BaseModel):
    """The speech translated by Whisper's translate task, timed as the original."""

    model_config = ConfigDict(extra="forbid")

    language: str  # "en": Whisper translates into English only
    segments: list[dict[str, Any]]

    def words(self) -> list[Word]:
        return _words(self.segments)


class Transcript(BaseModel):
    """The content of `transcript.json`.

    `language` is the spoken language ("und" where no speech was found), `windows`
    what each window of the sound was heard as, `flags` what a reviewer should look
    at (`no_speech`, `several_languages`, `language_assumed`); a probability too low
    to trust is the review policy's flag (`language_uncertain`, review.min_language_probability).
    """

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field("assetline/transcript@1", alias="schema")
    language: str
    language_probability: float | None = None
    duration: float
    model: TranscriptModel
    options: dict[str, Any]  # the options actually used (faster-whisper's TranscriptionOptions and ours)
    segments: list[dict[str, Any]]  # {start, end, text, words: [{start, end, word, probability}]}
    windows: list[WindowLanguage] = []
    flags: list[str] = []
    translation: Translation | None = None

    def words(self) -> list[Word]:
        return _words(self.segments)
