"""Transcription with faster-whisper: `transcript.json` (segments and timed words) from any media with sound.

The Whisper model is a registered CTranslate2 folder (multilingual whisper-base
by default), loaded once per process from its verified local copy, so nothing is
ever fetched from a hub. Silero VAD (inside faster-whisper) skips silence.

The language is detected in every window of the sound, and the clip's language
is the one heard over the most speech (`choose_language`); a clip heard in two
languages, with low confidence, or with no speech says so in `flags`. Speech that
is not English is also translated (Whisper's translate task), window by window.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline import models
from assetline.audio_windows import SAMPLE_RATE, audio_windows
from assetline.config import TranscribeOptions
from assetline.errors import DeviceError, ModelError, RecipeError
from assetline.glossary import GlossaryReport, hotwords, restore_spelling
from assetline.languages import UNDETERMINED
from assetline.media import probe
from assetline.progress import step_progress
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.storage import write_atomically
from assetline.tasks._common import model_ref, package_version
from assetline.transcript import Transcript, TranscriptModel, Translation, WindowLanguage

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


def _check_language(options: TranscribeOptions, model) -> str | None:
    """The language to pass to faster-whisper: None only when a multilingual model should detect it."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # every code Whisper knows (an English-only model's
    # public `supported_languages` is just ["en"], which would call "de" unknown rather than unsupported)

    multilingual = model.model.is_multilingual
    language = None if options.detect else options.language.lower()  # type: ignore[union-attr]
    if language is not None and language not in _LANGUAGE_CODES:
        raise RecipeError("transcribe.language", f"{language!r} is not a language Whisper knows (e.g. en, de, fr), or auto")
    if not multilingual:
        if language not in (None, "en"):
            raise RecipeError(
                "transcribe.language",
                f"model {options.model} is English-only and cannot transcribe {language!r}: "
                "choose a multilingual model (whisper-base), or language en",
            )
        return "en"
    return language


def choose_language(windows: list[WindowLanguage]) -> tuple[str, float | None, list[str]]:
    """The clip's language, its probability and the flags, from what each window was heard as.

    The language heard over the most seconds of speech wins; its probability is
    the speech-weighted mean over the windows heard in it. Flags: `no_speech`
    (no window had any: the language is `und`), `several_languages` (another
    language held at least 3 s and a tenth of the speech). Whether the probability
    is too low is the review policy's question (`review.min_language_probability`).
    """
    heard = [w for w in windows if w.language and w.speech_seconds > 0]
    if not heard:
        return UNDETERMINED, None, ["no_speech"]
    seconds: dict[str, float] = {}
    for w in heard:
        seconds[w.language] = seconds.get(w.language, 0.0) + w.speech_seconds  # type: ignore[index]
    language = max(seconds, key=lambda k: seconds[k])
    mine = [w for w in heard if w.language == language]
    probability = sum((w.probability or 0.0) * w.speech_seconds for w in mine) / sum(w.speech_seconds for w in mine)
    flags = []
    total = sum(seconds.values())
    if any(k != language and v >= 3.0 and v >= 0.1 * total for k, v in seconds.items()):
        flags.append("several_languages")
    return language, round(probability, 4), flags


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


# Whisper's looping hallucination: at the end of speech it may repeat an earlier sentence over a
# fraction of a second of near-silence (seen: the English Asterisk prompt's last sentence again,
# 0.24 s long, no-speech probability 0.87, mean word probability 0.08). A segment the model itself
# thinks is not speech and whose words it does not believe is dropped.
HALLUCINATION_NO_SPEECH, HALLUCINATION_WORD_PROBABILITY = 0.6, 0.2
HALLUCINATION_RULE = f"no_speech_prob > {HALLUCINATION_NO_SPEECH} and mean word probability < {HALLUCINATION_WORD_PROBABILITY}"


def _hallucinated(record: dict[str, Any]) -> bool:
    words = record.get("words") or []
    if not words or (record.get("no_speech_prob") or 0.0) <= HALLUCINATION_NO_SPEECH:
        return False
    return sum(w["probability"] for w in words) / len(words) < HALLUCINATION_WORD_PROBABILITY


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
            Whisper model (default whisper-base, multilingual); language: a
            code, or "auto" to detect it in every window (an English-only model
            always means "en", flagged `language_assumed`, and any other
            language for it is a `RecipeError`); translate_to "en": speech in
            another language is also translated (None: never);
            glossary: terms given to the model as hotwords
            and whose spelling is restored in the text; device cpu/cuda/auto
            with compute_type and cpu_threads (see `whisper_model`); beam_size;
            vad: skip silence with Silero VAD (on by default; without it
            Whisper tends to invent words in long silences).
        duration: the media's length when the caller probed it already
            (`Asset.info`: the source's, which loudness normalisation keeps);
            None: probed here, for progress only.

    The transcript holds segments with word timestamps and probabilities, the
    language (and what each window was heard as), flags for review, the
    translation when one was made, the media's duration, the model's name and
    sha256, and every option faster-whisper actually used.
    """
    import ctranslate2

    started = utc_now()
    cpu_threads = options.cpu_threads or models.threads_per_asset()  # what the model is given, and recorded
    model = whisper_model(options.model, options.device, options.compute_type, cpu_threads)
    multilingual = model.model.is_multilingual
    forced = _check_language(options, model)
    hints = hotwords(options.glossary)
    segments: list[dict[str, Any]] = []
    translated: list[dict[str, Any]] = []
    windows: list[WindowLanguage] = []
    info = None
    total = 0.0
    after_vad = 0.0
    translate_seconds = 0.0
    dropped = {"transcript": 0, "translation": 0}  # segments dropped as Whisper's looping hallucination
    translating = options.translate_to == "en" and multilingual
    progress = step_progress("transcribe")
    expected = duration if duration is not None else _duration_or_none(source)
    common = {"beam_size": options.beam_size, "vad_filter": options.vad, "word_timestamps": True, "hotwords": hints}
    for offset, samples in audio_windows(source, options.window_seconds):
        if len(samples) == 0 and info is not None:
            continue
        segments_iter, window_info = model.transcribe(
            samples, language=forced, task="transcribe", language_detection_segments=2, **common
        )
        heard = []
        for segment in segments_iter:  # decoding happens as this drains
            record = _segment_record(segment, offset)
            if _hallucinated(record):
                dropped["transcript"] += 1
                continue
            record["id"] = len(segments) + 1
            segments.append(record)
            heard.append(record)
            if expected:
                progress.update(record["end"] / expected)
        length = len(samples) / SAMPLE_RATE
        speech = window_info.duration_after_vad if options.vad else length
        speech = speech if heard else 0.0  # VAD let noise through, but the model heard no words
        windows.append(WindowLanguage(
            start=round(offset, 3), end=round(offset + length, 3), speech_seconds=round(speech, 3),
            language=window_info.language if speech else None,
            probability=round(float(window_info.language_probability), 4) if speech and forced is None else None,
        ))  # fmt: skip
        if translating and heard:
            if window_info.language == "en":  # already English: the transcription is its own translation
                translated += [dict(r, id=len(translated) + i, words=[dict(w) for w in r["words"]]) for i, r in enumerate(heard, 1)]
            else:
                tick = time.perf_counter()
                english, _ = model.transcribe(samples, language=window_info.language, task="translate", **common)
                for segment in english:
                    record = _segment_record(segment, offset)
                    if _hallucinated(record):
                        dropped["translation"] += 1
                        continue
                    record["id"] = len(translated) + 1
                    translated.append(record)
                translate_seconds += time.perf_counter() - tick
        if info is None:
            info = window_info
        total += length
        after_vad += window_info.duration_after_vad

    progress.done()
    if forced is not None:
        language, probability = forced, None
        flags = [] if any(w.speech_seconds for w in windows) else ["no_speech"]
        if options.detect:  # an English-only model was asked to detect
            flags.append("language_assumed")
    else:
        language, probability, flags = choose_language(windows)
    glossary = GlossaryReport()
    if options.glossary:
        restore_spelling(segments, options.glossary, glossary)
        restore_spelling(translated, options.glossary, glossary)
    translation = None
    if translating and (language not in ("en", UNDETERMINED) or "several_languages" in flags):
        translation = Translation(language="en", segments=translated)
    used = {
        "device_used": model.model.device,
        "compute_type_used": model.model.compute_type,
        "cpu_threads_used": cpu_threads,
    }
    recipe_options = options.model_dump(mode="json", exclude={"enabled"})
    spec = models.get_spec(options.model)
    transcript = Transcript(
        language=language,
        language_probability=probability,
        duration=round(total, 3),
        model=TranscriptModel(name=spec.name, sha256=spec.sha256),
        options={
            **recipe_options,
            **used,
            "transcription_options": _jsonable(info.transcription_options),
            "vad_options": _jsonable(info.vad_options) if options.vad else None,
        },
        segments=segments,
        windows=windows,
        flags=flags,
        translation=translation,
    )
    out = dest_dir / OUTPUT_NAME
    write_atomically(out, (transcript.model_dump_json(by_alias=True, indent=2) + "\n").encode("utf-8"))

    speech_by_language: dict[str, float] = {}
    for w in windows:
        if w.language and w.speech_seconds:
            speech_by_language[w.language] = round(speech_by_language.get(w.language, 0.0) + w.speech_seconds, 3)
    params = {
        **recipe_options,
        **used,
        "language_used": language,
        "language_probability": probability,
        "language_detected": forced is None,
        "speech_seconds_by_language": speech_by_language,
        "windows": len(windows),
        "flags": flags,
        "duration": transcript.duration,
        "duration_after_vad": round(after_vad, 3),
        "segments": len(segments),
        "words": sum(len(s["words"]) for s in segments),
        "translation": None if translation is None else {
            "language": "en", "task": "translate", "segments": len(translated),
            "seconds": round(translate_seconds, 3),
        },
    }  # fmt: skip
    if "language_assumed" in flags:
        params["language_note"] = f"model {spec.name} is English-only: language en assumed, not detected"
    if options.glossary:
        params["glossary_result"] = glossary.record(options.glossary)
    if any(dropped.values()):  # said in the manifest: text the model produced and assetline left out
        params["hallucinations_dropped"] = {**{k: v for k, v in dropped.items() if v}, "rule": HALLUCINATION_RULE}
    runtime = f"ctranslate2 {ctranslate2.__version__} ({used['device_used']})"
    tool = ToolRef(name="faster-whisper", version=package_version("faster-whisper"), runtime=runtime)
    return StepRecord.finished("transcribe", tool, started, "trainedAlgorithmicMedia", OUTPUT_NAME, params, model_ref(spec))
