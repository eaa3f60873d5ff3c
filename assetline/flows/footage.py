"""The footage flow: a clip arrives; it is cleaned, upscaled, transcribed, subtitled and packaged.

Trigger: `assetline run`, the inbox watcher, or the Prefect UI, with the path
of one video file. Its outputs go out in two groups, each whole, the words first
(`footage_groups`):
  subtitles group
    normalize_loudness  EBU R128 two-pass loudnorm of the soundtrack (made once, for both groups)
    transcribe          faster-whisper on the soundtrack: the language detected, and an
                        English translation when the speech is not English
    subtitles           broadcast-rule cues, in the footage's own frame rate and snapped to
                        its shot changes (found beside the first two): SRT, WebVTT and TTML per language
  picture group
    render_video        denoise + upscale + H.264 encode, one streaming pass
    matte               with video.matte: matte.mov / matte.mask.mp4 from the rendered picture
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
from assetline.flows._asset import AssetResult, Made, OutputGroup, intermediate_ref, produce_groups, source_ref
from assetline.media import probe
from assetline.orchestration import configured
from assetline.provenance import StepRecord

VIDEO, BURNED = "video.mp4", "video.burned.mp4"
MATTES = ("matte.mov", "matte.mask.mp4")  # video.matte's outputs, lined up with video.mp4
TRANSCRIPT, SRT, VTT, TTML = "transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml"
# The English translation's, made only when the speech is not English (so never in the expected list).
TRANSLATED = ("subtitles.en.srt", "subtitles.en.vtt", "subtitles.en.ttml")
NO_AUDIO_NOTE = "no audio stream: transcription and subtitles skipped"


def footage_groups(recipe: Recipe, asset: Asset | None = None) -> list[tuple[str, list[str]]]:
    """The output groups a footage run delivers, in order, each whole: its words, then its picture.

    The transcript and subtitles need only the soundtrack: they go out as soon as
    they are made, not after the picture is rendered (a 10-minute 1080p clip
    renders for half an hour on two cores). A clip without sound, or a recipe
    without transcription, has the picture group alone.
    """
    v = recipe.video
    has_audio = asset is None or asset.info is None or asset.info.audio is not None
    words: list[str] = []
    if has_audio and v.transcribe.enabled:
        words.append(TRANSCRIPT)
        if v.subtitles.enabled:
            words += [SRT, VTT, TTML]
    picture = [VIDEO]
    if words[1:] and v.package.burn_in:
        picture.append(BURNED)
    if v.matte.enabled:
        picture += list(v.matte.outputs)
    return [(group, names) for group, names in (("subtitles", words), ("picture", picture)) if names]


def footage_outputs(recipe: Recipe, asset: Asset | None = None) -> list[str]:
    """The files a footage run makes under this recipe (fewer for a clip without sound)."""
    return [name for _, names in footage_groups(recipe, asset) for name in names]


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
    cleaned: list[tuple[Path | None, list[StepRecord]]] = []  # the normalised soundtrack, made once for both groups

    def soundtrack(stage: Path) -> tuple[Path | None, list[StepRecord]]:
        if not cleaned:
            if has_audio and v.loudness.enabled:
                step = normalize_loudness(asset.reads, stage, v.loudness, info)
                cleaned.append((stage / step.output, [step]))
            else:
                cleaned.append((None, []))
        return cleaned[0]

    def make_words(stage: Path, earlier: dict[str, Made]) -> list[Made]:
        from concurrent.futures import ThreadPoolExecutor

        source = source_ref(asset)
        # The shot changes come from the picture, the words from the sound: one decode beside the
        # other (loudnorm keeps one core busy, the scene scoring the other), not after it.
        with ThreadPoolExecutor(1, thread_name_prefix="shot-changes") as pool:
            cuts = pool.submit(_cuts, asset, recipe) if v.subtitles.enabled else None
            normalized, sound_steps = soundtrack(stage)
            heard = transcribe(normalized or asset.reads, stage, v.transcribe, info.duration)
            found = cuts.result() if cuts is not None else ()
        transcript = stage / heard.output
        made = [Made(transcript, [source], sound_steps + [heard])]
        if v.subtitles.enabled:
            cue_steps = subtitles(transcript, stage, v.subtitles, info.video.fps, v.transcribe.forbidden, found)
            for step in cue_steps:
                made.append(Made(stage / step.output, [source, intermediate_ref(transcript)], sound_steps + [heard, step]))
        return made

    def make_picture(stage: Path, earlier: dict[str, Made]) -> list[Made]:
        source = source_ref(asset)
        made: list[Made] = []
        picture_steps = render_video(asset.reads, stage, v.denoise, v.upscale, v.encode, v.device)
        picture = stage / picture_steps[-1].output
        if v.matte.enabled:  # from the rendered picture, whose video stream video.mp4 carries unchanged
            from assetline.tasks.matte import matte

            for step in configured(recipe, matte)(picture, stage, v.matte, v.device):
                made.append(Made(stage / step.output, [source], picture_steps + [step]))
        normalized, sound_steps = soundtrack(stage)
        # One soft track per language, the spoken one first: the words group's, delivered or held.
        tracks = [
            SubtitleTrack(earlier[name].output, _step(earlier[name], "subtitles").parameters["language"])
            for name in sorted((n for n in earlier if n.endswith(".srt")), key=lambda n: (n != SRT, n))
        ]  # fmt: skip
        heard = _step(earlier[TRANSCRIPT], "transcribe") if tracks else None
        for step in package(picture, stage, normalized, tracks or None, v.package, v.encode):
            if heard is not None and step.digital_source_type != "digitalCapture":
                # The subtitle text it carries was written by the speech model: name it for the disclosure.
                step = step.model_copy(update={"model": heard.model, "parameters": {**step.parameters, "model_role": "wrote the subtitle text"}})
            inputs = [source] + [intermediate_ref(t.srt) for t in tracks]  # its own manifest names the model
            made.append(Made(stage / step.output, inputs, picture_steps + sound_steps + [step]))
        return made

    makers = {"subtitles": make_words, "picture": make_picture}
    groups = [OutputGroup(name, names, makers[name], TRANSLATED if name == "subtitles" else ()) for name, names in footage_groups(recipe, asset)]
    every = {VIDEO, BURNED, TRANSCRIPT, SRT, VTT, TTML, *TRANSLATED, *MATTES}
    note = "" if has_audio else NO_AUDIO_NOTE
    return produce_groups(asset, out_root, recipe, groups, every, note)


def _step(made: Made, name: str) -> StepRecord:
    return next(s for s in made.steps if s.name == name)


def _cuts(asset: Asset, recipe: Recipe) -> tuple[float, ...]:
    """The footage's shot changes, for cues to snap to; none when `video.subtitles.shot_changes` is off."""
    from assetline.shots import shot_changes

    rules = recipe.video.subtitles
    return tuple(shot_changes(asset.reads, rules.shot_threshold)) if rules.shot_changes else ()


if __name__ == "__main__":
    from assetline.flows.asset import process_asset

    print(process_asset(str(Path(sys.argv[1]).absolute()), sys.argv[2] if len(sys.argv) > 2 else "out"))
