"""The footage flow: a clip arrives; it is cleaned, upscaled, transcribed, subtitled and packaged.

Trigger: `assetline run`, the inbox watcher, or the Prefect UI, with the path
of one video file. Steps, in order:
  render_video        denoise + upscale + H.264 encode, one streaming pass
  matte               with video.matte: matte.mov / matte.mask.mp4 from the rendered picture
  normalize_loudness  EBU R128 two-pass loudnorm of the soundtrack
  transcribe          faster-whisper on the soundtrack: the language detected, and an
                      English translation when the speech is not English
  subtitles           broadcast-rule cues, in the footage's own frame rate and snapped to
                      its shot changes: SRT, WebVTT and TTML per language
  package             video.mp4: picture, normalised audio, one soft subtitle track per
                      language (ISO 639-2 tagged); video.burned.mp4 when burn-in is on
A clip without sound is still processed: transcription is skipped, and the
table and the manifest say so. Produces, under `OUT/<stem>-<sha8>/`:
video.mp4, transcript.json, subtitles.srt, .vtt, .ttml (subtitles.en.* for
speech that is not English; video.burned.mp4), each with its `.provenance.json`.

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
MATTES = ("matte.mov", "matte.mask.mp4")  # video.matte's outputs, lined up with video.mp4
TRANSCRIPT, SRT, VTT, TTML = "transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml"
# The English translation's, made only when the speech is not English (so never in the expected list).
TRANSLATED = ("subtitles.en.srt", "subtitles.en.vtt", "subtitles.en.ttml")
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
        names += [SRT, VTT, TTML]
        if v.package.burn_in:
            names.append(BURNED)
    if v.matte.enabled:
        names += list(v.matte.outputs)
    return names


def run_footage_steps(asset: Asset, out_root: Path, recipe: Recipe) -> AssetResult:
    from assetline.tasks.loudness import normalize_loudness
    from assetline.tasks.package import SubtitleTrack, package
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
        if v.matte.enabled:  # from the rendered picture, whose video stream video.mp4 carries unchanged
            from assetline.tasks.matte import matte

            for step in configured(recipe, matte)(picture, stage, v.matte, v.device):
                made.append(Made(stage / step.output, [source], picture_steps + [step]))
        normalized, sound_steps = None, []
        if has_audio and v.loudness.enabled:
            cleaned = normalize_loudness(asset.reads, stage, v.loudness, info)
            normalized = stage / cleaned.output
            sound_steps.append(cleaned)
        video_steps += sound_steps
        srt = None
        tracks: list[SubtitleTrack] = []  # one per language, the spoken one first
        if has_audio and v.transcribe.enabled:
            heard = transcribe(normalized or asset.reads, stage, v.transcribe, info.duration)
            transcript = stage / heard.output
            made.append(Made(transcript, [source], sound_steps + [heard]))
            if v.subtitles.enabled:
                cue_steps = subtitles(transcript, stage, v.subtitles, info.video.fps, v.transcribe.forbidden, _cuts(asset, recipe))
                for step in cue_steps:
                    made.append(Made(stage / step.output, [source, intermediate_ref(transcript)], sound_steps + [heard, step]))
                srt = stage / SRT  # video.mp4 names it as an input; its own manifest names the model
                tracks = [
                    SubtitleTrack(stage / step.output, step.parameters["language"])
                    for step in cue_steps if step.output.endswith(".srt")
                ]  # fmt: skip
        for step in package(picture, stage, normalized, tracks or None, v.package, v.encode):
            if srt is not None and step.digital_source_type != "digitalCapture":
                # The subtitle text it carries was written by the speech model: name it for the disclosure.
                step = step.model_copy(update={"model": heard.model, "parameters": {**step.parameters, "model_role": "wrote the subtitle text"}})
            inputs = [source] + [intermediate_ref(t.srt) for t in tracks]
            made.append(Made(stage / step.output, inputs, video_steps + [step]))
        return made

    every = {VIDEO, BURNED, TRANSCRIPT, SRT, VTT, TTML, *TRANSLATED, *MATTES}
    note = "" if has_audio else NO_AUDIO_NOTE
    return produce(asset, out_root, recipe, footage_outputs(recipe, asset), every, make, note)


def _cuts(asset: Asset, recipe: Recipe) -> tuple[float, ...]:
    """The footage's shot changes, for cues to snap to; none when `video.subtitles.shot_changes` is off."""
    from assetline.shots import shot_changes

    rules = recipe.video.subtitles
    return tuple(shot_changes(asset.reads, rules.shot_threshold)) if rules.shot_changes else ()


if __name__ == "__main__":
    from assetline.flows.asset import process_asset

    print(process_asset(str(Path(sys.argv[1]).absolute()), sys.argv[2] if len(sys.argv) > 2 else "out"))
