"""The footage flow: a clip arrives; it is cleaned, upscaled, transcribed, subtitled and packaged.

Trigger: `assetline run`, the inbox watcher, or the Prefect UI, with the path
of one video file. Steps, in order:
  render_video        denoise + upscale + H.264 encode, one streaming pass
  normalize_loudness  EBU R128 two-pass loudnorm of the soundtrack
  transcribe          faster-whisper on the soundtrack
  subtitles           broadcast-rule cues, in the footage's own frame rate
  package             video.mp4: picture, normalised audio, soft subtitle track;
                      video.burned.mp4 when burn-in is on
A clip without sound is still processed: transcription is skipped, and the
table and the manifest say so. Produces, under `OUT/<stem>-<sha8>/`:
video.mp4, transcript.json, subtitles.srt, subtitles.vtt (and
video.burned.mp4), each with its `.provenance.json`.

Run on its own: `python -m assetline.flows.footage CLIP [OUT]` (a process-asset run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from assetline.assets import Asset
from assetline.config import Recipe
from assetline.errors import BadInputError
from assetline.flows._asset import AssetResult, Made, intermediate_ref, produce, source_ref
from assetline.media import probe
from assetline.orchestration import configured

VIDEO, BURNED = "video.mp4", "video.burned.mp4"
TRANSCRIPT, SRT, VTT = "transcript.json", "subtitles.srt", "subtitles.vtt"
NO_AUDIO_NOTE = "no audio stream: transcription and subtitles skipped"


def footage_outputs(recipe: Recipe, asset: Asset | None = None) -> list[str]:
    """The files a footage run makes under this recipe (fewer for a clip without sound)."""
    v = recipe.video
    has_audio = asset is None or asset.info is None or asset.info.audio is not None
    subtitled = has_audio and v.transcribe.enabled and v.subtitles.enabled
    names = [VIDEO]
    if has_audio and v.transcribe.enabled:
        names.append(TRANSCRIPT)
    if subtitled:
        names += [SRT, VTT]
        if v.package.burn_in:
            names.append(BURNED)
    return names


def run_footage_steps(asset: Asset, out_root: Path, recipe: Recipe) -> AssetResult:
    from assetline.tasks.loudness import normalize_loudness
    from assetline.tasks.package import package
    from assetline.tasks.render_video import render_video
    from assetline.tasks.subtitles import subtitles
    from assetline.tasks.transcribe import transcribe

    render_video, normalize_loudness, transcribe, subtitles, package = configured(
        recipe, render_video, normalize_loudness, transcribe, subtitles, package
    )
    v = recipe.video
    info = asset.info or probe(asset.reads)
    if info.video is None:
        raise BadInputError(asset.path, "no video stream")
    has_audio = info.audio is not None

    def make(stage: Path) -> list[Made]:
        source = source_ref(asset)
        made: list[Made] = []
        picture_steps = render_video(asset.reads, stage, v.denoise, v.upscale, v.encode, v.device)
        picture = stage / picture_steps[-1].output
        video_steps = list(picture_steps)
        normalized, sound_steps = None, []
        if has_audio and v.loudness.enabled:
            cleaned = normalize_loudness(asset.reads, stage, v.loudness, info)
            normalized = stage / cleaned.output
            sound_steps.append(cleaned)
        video_steps += sound_steps
        srt = None
        if has_audio and v.transcribe.enabled:
            heard = transcribe(normalized or asset.reads, stage, v.transcribe, info.duration)
            transcript = stage / heard.output
            made.append(Made(transcript, [source], sound_steps + [heard]))
            if v.subtitles.enabled:
                cue_steps = subtitles(transcript, stage, v.subtitles, info.video.fps)
                for step in cue_steps:
                    made.append(Made(stage / step.output, [source, intermediate_ref(transcript)], sound_steps + [heard, step]))
                srt = stage / SRT  # video.mp4 names it as an input; its own manifest names the model
        for step in package(picture, stage, normalized, srt, v.package, v.encode):
            if srt is not None and step.digital_source_type != "digitalCapture":
                # The subtitle text it carries was written by the speech model: name it for the disclosure.
                step = step.model_copy(update={"model": heard.model, "parameters": {**step.parameters, "model_role": "wrote the subtitle text"}})
            inputs = [source] + ([intermediate_ref(srt)] if srt is not None else [])
            made.append(Made(stage / step.output, inputs, video_steps + [step]))
        return made

    every = {VIDEO, BURNED, TRANSCRIPT, SRT, VTT}
    note = "" if has_audio else NO_AUDIO_NOTE
    return produce(asset, out_root, recipe, footage_outputs(recipe, asset), every, make, note)


if __name__ == "__main__":
    from assetline.flows.asset import process_asset

    print(process_asset(str(Path(sys.argv[1]).absolute()), sys.argv[2] if len(sys.argv) > 2 else "out"))
