"""The subtitles step: `transcript.json` in, `subtitles.srt`, `.vtt` and `.ttml` out, one `StepRecord` each.

In the spoken language, and, when the transcript carries an English translation,
`subtitles.en.srt`, `.vtt` and `.ttml` too, built by the same cue rules. A thin
task over `assetline.captions` (cues under broadcast timing rules, SRT/VTT/TTML
writing); here only the transcript is read, forbidden terms are looked for in
the cues, and the records are made.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from assetline.captions import build_cues, write_subtitles
from assetline.captions.writing import write_ttml
from assetline.config import SubtitleOptions
from assetline.errors import BadInputError
from assetline.glossary import forbidden_in
from assetline.languages import bcp47
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import package_version
from assetline.transcript import Transcript

SRT_NAME = "subtitles.srt"
VTT_NAME = "subtitles.vtt"
TTML_NAME = "subtitles.ttml"
TRANSLATED_NAMES = ("subtitles.en.srt", "subtitles.en.vtt", "subtitles.en.ttml")  # English translation


def output_names(translated: bool = False) -> list[str]:
    """The files the step writes: the spoken language's, then the English translation's."""
    return [SRT_NAME, VTT_NAME, TTML_NAME] + (list(TRANSLATED_NAMES) if translated else [])


def _read_transcript(path: Path) -> Transcript:
    try:
        transcript = Transcript.model_validate_json(path.read_bytes())
        transcript.words()  # every word has its fields
    except OSError as exc:
        raise BadInputError(path, f"cannot read transcript: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise BadInputError(path, f"not a transcript: {exc.errors()[0]['msg']}") from None
    except (KeyError, TypeError, AttributeError):
        raise BadInputError(path, "not a transcript: each word needs start, end and word") from None
    return transcript


def _build(words, options: SubtitleOptions, fps: float | None, language: str, shot_changes: Sequence[float]):
    """`build_cues` with the language's word lists and the shot changes, where the planner takes them."""
    accepted = inspect.signature(build_cues).parameters
    extra: dict[str, Any] = {}
    if "language" in accepted:
        extra["language"] = language
    if "shot_changes" in accepted and shot_changes:
        extra["shot_changes"] = tuple(shot_changes)
    return build_cues(words, options, fps, **extra)


def flag_forbidden(cues, terms: Sequence[str]) -> list[dict[str, Any]]:
    """The cues holding a forbidden term: index (from 1, as in the SRT), times, text and the terms found."""
    flagged = []
    for i, cue in enumerate(cues, start=1):
        found = forbidden_in(cue.text, terms)
        if found:
            flagged.append({"cue": i, "start": cue.start, "end": cue.end, "text": cue.text, "terms": found})
    return flagged


@task(name="subtitles", cache_policy=NO_CACHE, persist_result=False)
def subtitles(
    transcript_path: Path,
    dest_dir: Path,
    options: SubtitleOptions = SubtitleOptions(),
    fps: float | None = None,
    forbidden: Sequence[str] = (),
    shot_changes: Sequence[float] = (),
) -> list[StepRecord]:
    """Subtitle cues from `transcript.json` into `dest_dir/subtitles.{srt,vtt,ttml}` (and `subtitles.en.*`).

    Args:
        transcript_path: a `Transcript` as JSON; no words (silence) gives empty subtitle files.
        dest_dir: folder the files are written to.
        options: the broadcast rules (defaults: 42 characters a line, 2 lines,
            5/6 s to 7 s, 17 characters a second, 2 frames between cues).
        fps: the media's frame rate for the frame grid and the gap; None uses `options.fps`.
        forbidden: terms whose cues are flagged (`forbidden` in the records' parameters: the cues).
        shot_changes: times of the footage's cuts, for the planner to snap to (none for audio).

    The transcript's translation, when it has one, gives `subtitles.en.*` by
    the same rules; a transcript without one (English speech) gives no such
    file, not an empty one. Returns one StepRecord per file (SRT, VTT, TTML,
    then the translation's), with the rules used, the language, the cue count,
    how many cues could not meet each rule and the cues holding forbidden terms.
    """
    started = utc_now()
    transcript = _read_transcript(transcript_path)
    rate = options.fps if fps is None else fps
    tracks = [(transcript.language, transcript.words(), (SRT_NAME, VTT_NAME, TTML_NAME), "transcribe")]
    if transcript.translation is not None:
        tracks.append((transcript.translation.language, transcript.translation.words(), TRANSLATED_NAMES, "translate"))
    tool = ToolRef(name="pysubs2", version=package_version("pysubs2"))
    ttml_tool = ToolRef(name="ttconv", version=package_version("ttconv"))
    records: list[StepRecord] = []
    for language, words, (srt, vtt, ttml), task_name in tracks:
        try:
            build = _build(words, options, fps, language, shot_changes)
        except ValueError as exc:
            raise BadInputError(transcript_path, str(exc)) from None
        write_subtitles(build.cues, dest_dir / srt, dest_dir / vtt)
        write_ttml(build.cues, dest_dir / ttml, bcp47(language), rate)
        ended = utc_now()
        flagged = flag_forbidden(build.cues, forbidden)
        parameters = {
            **options.model_dump(exclude={"enabled"}),
            "fps": rate,
            "cues": len(build.cues),
            "exceptions": build.counts(),
            "language": language,
            "spoken_language": transcript.language,
            "text_from": task_name,  # "transcribe": the speech as spoken; "translate": Whisper's English translation
            "transcript_model": transcript.model.name,
            "transcript_flags": list(transcript.flags),
            "shot_changes": [round(t, 3) for t in shot_changes],
            "forbidden_terms": list(forbidden),
            "forbidden": flagged,  # the cues holding one: {cue (1-based, as numbered in the SRT), start, end, text, terms}
            "flags": ["forbidden_terms"] if flagged else [],
        }
        # The rules here are conventional, but every word shown was written by the
        # speech model: the text is trained-algorithmic media, disclosed as such even
        # when a manifest holds this step alone. The model ran in `transcribe`, so none here.
        for output, made_by in ((srt, tool), (vtt, tool), (ttml, ttml_tool)):
            records.append(StepRecord(
                name="subtitles", tool=made_by, model=None, parameters=parameters,
                started_at=started, ended_at=ended, digital_source_type="trainedAlgorithmicMedia", output=output,
            ))  # fmt: skip
    return records
