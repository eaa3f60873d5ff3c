"""Subtitles from timed words, without Prefect: cue layout, timing rules and SRT/VTT writing, each its own module.

`text` (words as shown), `layout` (per-language word lists in `lang/*.json`, the
never-break rules and the cost-based planner of line and cue breaks), `timing`
(the frame grid, gaps and their closing, durations, reading speed, shot changes),
`cues` (`build_cues` and its records) and `writing` (the subtitle files).
"""

from assetline.captions.cues import EXCEPTION_RULES, CueBuild, SubtitleCue, build_cues
from assetline.captions.words import NEUTRAL, available_languages, break_quality, never_break, word_list
from assetline.captions.text import MAX_WORD_SECONDS, normalise_text
from assetline.captions.writing import write_subtitles

__all__ = [
    "EXCEPTION_RULES",
    "MAX_WORD_SECONDS",
    "CueBuild",
    "SubtitleCue",
    "NEUTRAL",
    "available_languages",
    "break_quality",
    "build_cues",
    "never_break",
    "normalise_text",
    "word_list",
    "write_subtitles",
]
