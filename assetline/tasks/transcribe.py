"""Transcription with faster-whisper: `transcript.json` (segments and timed words) from any media with sound.

The Whisper model is a registered CTranslate2 folder (the bundled tiny.en by
default), loaded once per process from its verified local copy, so nothing is
ever fetched from a hub. Silero VAD (inside faster-whisper) skips silence.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.audio_windows import SAMPLE_RATE, audio_windows
from assetline.config import TranscribeOptions
from assetline.errors import DeviceError, ModelError, RecipeError
from assetline.media import probe
from assetline.progress import step_progress
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.storage import write_atomically
from assetline.tasks._common import model_ref, package_version
from assetline.transcript import Transcript, TranscriptModel

OUTPUT_NAME = "transcript.json"

# Values CTranslate2 resolves itself to the best type the device supports.
_RESOLVED_COMPUTE_TYPES = ("default", "auto")


def resolve_device(device: str) -> str:
    """`cpu` or `cuda` for a recipe's `cpu` / `cuda` / `auto`; `cuda` without a CUDA device is an error."""
    import ctranslate2

    if device == "cpu":
        return "cpu"
    try:
        gpus = ctranslate2.get_cuda_device_count()
    except RuntimeError:  # a CUDA runtime whose driver is missing or too old
        gpus = 0
    if gpus > 0:
        return "cuda"
    if device == "cuda":
        raise DeviceError(
            "device=cuda",
            f"CTranslate2 {ctranslate2.__version__} finds no CUDA device on this machine "
            "(set transcribe.device to cpu or auto)",
        )
    return "cpu"


def _check_compute_type(compute_type: str, device: str) -> None:
    """CTranslate2 would quietly convert a type the device lacks; ours asks for it to be chosen."""
    import ctranslate2

    if compute_type in _RESOLVED_COMPUTE_TYPES:
        return
    try:
        supported = sorted(ctranslate2.get_supported_compute_types(device))
    except RuntimeError as exc:
        raise DeviceError(f"device={device}", f"CTranslate2 cannot use it: {exc}") from None
    if compute_type not in supported:
        raise DeviceError(
            f"device={device}",
            f"compute type {compute_type!r} is not supported here (supported: {', '.join(supported)}, or auto)",
        )


def whisper_model(name: str, device: str = "cpu", compute_type: str = "int8", cpu_threads: int = 0):
    """The faster-whisper `WhisperModel` for registered model `name`, loaded once per process.

    Args:
        name: a registered Whisper model (family "whisper"): a CTranslate2
            folder with `model.bin`, `config.json` and `tokenizer.json`.
        device: "cpu"; "cuda" (a `DeviceError` if CTranslate2 sees no CUDA
            device); "auto" (cuda when there is one, else cpu). The model's
            `.model.device` says which was used.
        compute_type: a CTranslate2 type ("int8", "float16", ...); one the
            device does not support is a `DeviceError`, not a silent
            conversion. "auto"/"default" let CTranslate2 choose; the model's
            `.model.compute_type` says what it chose.
        cpu_threads: CTranslate2 threads on the CPU; 0 uses this asset's
            share of the cores (`models.threads_per_asset()`: the cores this
            process may run on, split between the assets in flight).
    """
    spec = models.get_spec(name)
    if spec.family != "whisper":
        raise ModelError(name, f"not a Whisper model (family {spec.family!r})")
    folder = models.require(name)
    if not (folder / "tokenizer.json").is_file():
        # Without it faster-whisper fetches a tokenizer from the hub.
        raise ModelError(name, f"{folder} has no tokenizer.json: not a complete CTranslate2 Whisper folder")
    used_device = resolve_device(device)
    _check_compute_type(compute_type, used_device)
    threads = cpu_threads or models.threads_per_asset()

    def make():
        from faster_whisper import WhisperModel

        try:
            # A folder path (never a size like "tiny.en", which faster-whisper downloads).
            return WhisperModel(
                str(folder), device=used_device, compute_type=compute_type,
                cpu_threads=threads, local_files_only=True,
            )  # fmt: skip
        except (RuntimeError, ValueError) as exc:
            raise ModelError(name, f"CTranslate2 cannot load it on {used_device}: {exc}") from exc

    return models.sessions.get(("whisper", name, str(folder), used_device, compute_type, threads), make)


def _check_language(options: TranscribeOptions, multilingual: bool) -> str | None:
    """The language to pass to faster-whisper: None only when a multilingual model should detect it."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    language = options.language
    if language is not None and language not in _LANGUAGE_CODES:
        raise RecipeError("transcribe.language", f"{language!r} is not a language Whisper knows (e.g. en, de, fr)")
    if not multilingual:
        if language not in (None, "en"):
            raise RecipeError(
                "transcribe.language",
                f"model {options.model} is English-only and cannot transcribe {language!r}: "
                "choose a multilingual model, or language en",
            )
        return "en"
    return language


def _duration_or_none(source: Path) -> float | None:
    """The media's length for progress reporting; None when unknown (the decode reports real problems)."""
    try:
        return probe(source).duration
    except Exception:
        return None


def _jsonable(value: Any) -> Any:
    """faster-whisper's option records as JSON values; an unbounded (infinite) limit becomes null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _segment_record(segment, offset: float = 0.0) -> dict[str, Any]:
    """A segment as transcript.json holds it, its times moved by the window's `offset`."""
    return {
        "id": segment.id,
        "start": round(segment.start + offset, 3),
        "end": round(segment.end + offset, 3),
        "text": segment.text,
        "avg_logprob": round(segment.avg_logprob, 4),
        "no_speech_prob": round(segment.no_speech_prob, 4),
        "words": [
            {"start": round(w.start + offset, 3), "end": round(w.end + offset, 3), "word": w.word,
             "probability": round(w.probability, 4)}
            for w in segment.words or ()
        ],
    }


@task(name="transcribe", cache_policy=NO_CACHE, persist_result=False)
def transcribe(
    source: Path, dest_dir: Path, options: TranscribeOptions = TranscribeOptions(), duration: float | None = None
) -> StepRecord:
    """Transcribe the sound of `source` and write `dest_dir/transcript.json`.

    Args:
        source: any file PyAV decodes with an audio stream (WAV, FLAC, MP3,
            AAC, a video's soundtrack); it is mixed to mono at 16 kHz.
        dest_dir: folder the transcript is written to (a staging folder in a run).
        options: the recipe's `audio.transcribe` section. model: a registered
            Whisper model (default whisper-tiny.en); language: a code, or None
            to detect it (an English-only model always means "en", and any
            other language for it is a `RecipeError`); device cpu/cuda/auto
            with compute_type and cpu_threads (see `whisper_model`);
            beam_size; vad: skip silence with Silero VAD (on by default;
            without it Whisper tends to invent words in long silences).
        duration: the media's length when the caller probed it already
            (`Asset.info`: the source's, which loudness normalisation keeps);
            None: probed here, for progress only.

    The transcript holds segments with word timestamps and probabilities, the
    detected (or given) language, the media's duration, the model's name and
    sha256, and every option faster-whisper actually used.
    """
    import ctranslate2

    started = utc_now()
    cpu_threads = options.cpu_threads or models.threads_per_asset()  # what the model is given, and recorded
    model = whisper_model(options.model, options.device, options.compute_type, cpu_threads)
    language = _check_language(options, model.model.is_multilingual)
    segments: list[dict[str, Any]] = []
    info = None
    total = 0.0
    after_vad = 0.0
    progress = step_progress("transcribe")
    expected = duration if duration is not None else _duration_or_none(source)
    for offset, samples in audio_windows(source, options.window_seconds):
        if len(samples) == 0 and info is not None:
            continue
        segments_iter, window_info = model.transcribe(
            samples,
            language=language,
            beam_size=options.beam_size,
            vad_filter=options.vad,
            word_timestamps=True,
        )
        for segment in segments_iter:  # decoding happens as this drains
            record = _segment_record(segment, offset)
            record["id"] = len(segments) + 1
            segments.append(record)
            if expected:
                progress.update(record["end"] / expected)
        if info is None:
            info = window_info
            language = language or window_info.language  # one language for the whole file
        total += len(samples) / SAMPLE_RATE
        after_vad += window_info.duration_after_vad

    progress.done()
    used = {
        "device_used": model.model.device,
        "compute_type_used": model.model.compute_type,
        "cpu_threads_used": cpu_threads,
    }
    recipe_options = options.model_dump(mode="json", exclude={"enabled"})
    spec = models.get_spec(options.model)
    transcript = Transcript(
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
        duration=round(total, 3),
        model=TranscriptModel(name=spec.name, sha256=spec.sha256),
        options={
            **recipe_options,
            **used,
            "transcription_options": _jsonable(info.transcription_options),
            "vad_options": _jsonable(info.vad_options) if options.vad else None,
        },
        segments=segments,
    )
    out = dest_dir / OUTPUT_NAME
    write_atomically(out, (transcript.model_dump_json(by_alias=True, indent=2) + "\n").encode("utf-8"))

    params = {
        **recipe_options,
        **used,
        "language_used": info.language,
        "language_probability": transcript.language_probability,
        "duration": transcript.duration,
        "duration_after_vad": round(after_vad, 3),
        "segments": len(segments),
        "words": sum(len(s["words"]) for s in segments),
    }
    return StepRecord(
        name="transcribe",
        tool=ToolRef(
            name="faster-whisper",
            version=package_version("faster-whisper"),
            runtime=f"ctranslate2 {ctranslate2.__version__} ({used['device_used']})",
        ),
        model=model_ref(spec),
        parameters=params,
        started_at=started,
        ended_at=utc_now(),
        digital_source_type="trainedAlgorithmicMedia",
        output=OUTPUT_NAME,
    )
