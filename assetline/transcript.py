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


class Transcript(BaseModel):
    """The content of `transcript.json`."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field("assetline/transcript@1", alias="schema")
    language: str
    language_probability: float | None = None
    duration: float
    model: TranscriptModel
    options: dict[str, Any]  # the options actually used (faster-whisper's TranscriptionOptions and ours)
    segments: list[dict[str, Any]]  # {start, end, text, words: [{start, end, word, probability}]}

    def words(self) -> list[Word]:
        return [
            Word(w["start"], w["end"], w["word"], w.get("probability", 1.0))
            for seg in self.segments
            for w in seg.get("words", [])
        ]
