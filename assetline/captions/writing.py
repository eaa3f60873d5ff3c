"""Writing cues as SubRip and WebVTT through pysubs2, the transcript's text shown literally (never as markup)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pysubs2

from assetline.captions.cues import SubtitleCue
from assetline.storage import write_atomically

# pysubs2 keeps cue text in SubStation form, where {...} is an override block and
# a backslash starts \N, \h; players read {\an8} and <i> in SRT as styling too.
# Transcript text is shown as text: braces and backslashes become harmless
# look-alikes, and each format's own markup characters are neutralised.
_SUBSTATION_SAFE = {"{": "(", "}": ")", "\\": "/"}
_SRT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "<": "‹", ">": "›"})  # SRT has no escapes
_VTT_SAFE = str.maketrans({**_SUBSTATION_SAFE, "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def write_subtitles(cues: Sequence[SubtitleCue], srt_path: Path, vtt_path: Path) -> None:
    """Write `cues` as SubRip and WebVTT, each atomically; no cues gives valid empty files.

    The SRT is empty (zero cues); the WebVTT holds only its `WEBVTT` header.
    """
    for path, fmt, table in ((srt_path, "srt", _SRT_SAFE), (vtt_path, "vtt", _VTT_SAFE)):
        subs = pysubs2.SSAFile()
        for cue in cues:
            text = r"\N".join(line.translate(table) for line in cue.lines)
            subs.append(pysubs2.SSAEvent(start=round(cue.start * 1000), end=round(cue.end * 1000), text=text))
        write_atomically(path, subs.to_string(fmt).encode("utf-8"))
