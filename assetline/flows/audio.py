"""The audio flow: speech arrives; it is transcribed, then subtitled.

Trigger: `assetline run`, the inbox watcher, or the Prefect UI, with the path
of one audio file (wav, mp3, m4a, flac, ogg: anything PyAV decodes). Produces,
under `OUT/<stem>-<sha8>/`:
  (the sound is first normalised to EBU R128 loudness; the measurements go into provenance)
  transcript.json   segments and words with times and probabilities (faster-whisper)
  subtitles.srt     cues built to broadcast timing rules
  subtitles.vtt     the same cues as WebVTT
  subtitles.ttml    the same cues as TTML (IMSC 1.1 Text)
  subtitles.en.*    the English translation's, when the speech is not English
and next to each its `.provenance.json`. Pure silence gives a transcript with
no segments (flagged `no_speech`) and valid, empty subtitle files.

Run on its own: `python -m assetline.flows.audio FILE [OUT]` (a process-asset run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from assetline.assets import Asset
from assetline.config import Recipe
from assetline.flows._asset import AssetResult, Made, intermediate_ref, produce, source_ref
from assetline.orchestration import configured

TRANSCRIPT, SRT, VTT, TTML = "transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml"
TRANSLATED = ("subtitles.en.srt", "subtitles.en.vtt", "subtitles.en.ttml")  # only when the speech is not English


def audio_outputs(recipe: Recipe, asset: Asset | None = None) -> list[str]:
    """The files an audio run makes under this recipe."""
    audio = recipe.audio
    if not audio.transcribe.enabled:
        return []
    return [TRANSCRIPT, SRT, VTT, TTML] if audio.subtitles.enabled else [TRANSCRIPT]


def run_audio_steps(asset: Asset, out_root: Path, recipe: Recipe) -> AssetResult:
    from assetline.tasks.loudness import normalize_loudness
    from assetline.tasks.subtitles import subtitles
    from assetline.tasks.transcribe import transcribe

    normalize_loudness, subtitles, transcribe = configured(recipe, normalize_loudness, subtitles, transcribe)
    audio = recipe.audio

    def make(stage: Path) -> list[Made]:
        if not audio.transcribe.enabled:
            return []
        listen_to, steps = asset.reads, []
        if audio.loudness.enabled:  # transcribe the cleaned sound; its loudness goes into the manifests
            cleaned = normalize_loudness(asset.reads, stage, audio.loudness, asset.info)
            listen_to, steps = stage / cleaned.output, [cleaned]
        heard = transcribe(listen_to, stage, audio.transcribe, asset.info.duration if asset.info else None)
        steps.append(heard)
        transcript = stage / heard.output
        made = [Made(transcript, [source_ref(asset)], list(steps))]
        if audio.subtitles.enabled:
            inputs = [source_ref(asset), intermediate_ref(transcript)]
            for cue_step in subtitles(transcript, stage, audio.subtitles, None, audio.transcribe.forbidden):
                made.append(Made(stage / cue_step.output, inputs, steps + [cue_step]))
        return made

    every = {TRANSCRIPT, SRT, VTT, TTML, *TRANSLATED}
    return produce(asset, out_root, recipe, audio_outputs(recipe), every, make)


if __name__ == "__main__":
    from assetline.flows.asset import process_asset

    print(process_asset(str(Path(sys.argv[1]).absolute()), sys.argv[2] if len(sys.argv) > 2 else "out"))
