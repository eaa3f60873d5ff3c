"""Subtitles from timed words, without Prefect: cue layout, timing rules and SRT/VTT writing, each its own module.

`text` (words as shown), `layout` (line and cue breaks), `timing` (the millisecond
and frame grid, gaps, durations, reading speed), `cues` (`build_cues` and its
records) and `writing` (SubRip and WebVTT through pysubs2).
"""

from assetline.captions.cues import EXCEPTION_RULES, CueBuild, SubtitleCue, build_cues
from assetline.captions.layout import break_quality
from assetline.captions.text import MAX_WORD_SECONDS, normalise_text
from assetline.captions.writing import write_subtitles

__all__ = [
    "EXCEPTION_RULES",
    "MAX_WORD_SECONDS",
    "CueBuild",
    "SubtitleCue",
    "break_quality",
    "build_cues",
    "normalise_text",
    "write_subtitles",
]
