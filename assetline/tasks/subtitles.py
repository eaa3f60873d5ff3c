"""The subtitles step: `transcript.json` in, `subtitles.srt` and `subtitles.vtt` out, one `StepRecord` each.

A thin task over `assetline.captions` (cues under broadcast timing rules, SRT/VTT
writing); here only the transcript is read and the records are made.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from assetline.captions import build_cues, write_subtitles
from assetline.config import SubtitleOptions
from assetline.errors import BadInputError
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.tasks._common import package_version
from assetline.transcript import Transcript

SRT_NAME = "subtitles.srt"
VTT_NAME = "subtitles.vtt"


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


@task(name="subtitles", cache_policy=NO_CACHE, persist_result=False)
def subtitles(
    transcript_path: Path,
    dest_dir: Path,
    options: SubtitleOptions = SubtitleOptions(),
    fps: float | None = None,
) -> list[StepRecord]:
    """Subtitle cues from `transcript.json` into `dest_dir/subtitles.srt` and `dest_dir/subtitles.vtt`.

    Args:
        transcript_path: a `Transcript` as JSON; no words (silence) gives empty subtitle files.
        dest_dir: folder both files are written to.
        options: the broadcast rules (defaults: 42 characters a line, 2 lines,
            5/6 s to 7 s, 17 characters a second, 2 frames between cues).
        fps: the media's frame rate for the gap; None uses `options.fps`.

    Returns one StepRecord per file (SRT first), with the rules used, the cue
    count and how many cues could not meet each rule.
    """
    started = utc_now()
    transcript = _read_transcript(transcript_path)
    try:
        build = build_cues(transcript.words(), options, fps)
    except ValueError as exc:
        raise BadInputError(transcript_path, str(exc)) from None
    write_subtitles(build.cues, dest_dir / SRT_NAME, dest_dir / VTT_NAME)
    ended = utc_now()
    parameters = {
        **options.model_dump(exclude={"enabled"}),
        "fps": options.fps if fps is None else fps,
        "cues": len(build.cues),
        "exceptions": build.counts(),
        "language": transcript.language,
        "transcript_model": transcript.model.name,
    }
    tool = ToolRef(name="pysubs2", version=package_version("pysubs2"))
    # The rules here are conventional, but every word shown was written by the
    # speech model: the text is trained-algorithmic media, disclosed as such even
    # when a manifest holds this step alone. The model ran in `transcribe`, so none here.
    return [
        StepRecord(
            name="subtitles",
            tool=tool,
            model=None,
            parameters=parameters,
            started_at=started,
            ended_at=ended,
            digital_source_type="trainedAlgorithmicMedia",
            output=output,
        )
        for output in (SRT_NAME, VTT_NAME)
    ]
