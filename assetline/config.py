"""Recipes: what assetline does to each kind of asset, validated before any work starts.

A recipe is YAML; `configs/default.yaml` documents the defaults, which are the
field defaults below. `--recipe FILE` replaces them, `--set a.b=value` changes
one value (reading both: `assetline.recipes`). Unknown keys and bad values are
a `RecipeError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Device = Literal["cpu", "cuda", "auto"]
# CTranslate2's compute types; which of them a machine supports is checked when the model loads.
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32")  # fmt: skip


def _model_of_family(name: str, family: str) -> str:
    from assetline.models import REGISTRY, user_models_problem

    known = sorted(n for n, spec in REGISTRY.items() if spec.family == family)
    if name not in known:
        problem = user_models_problem()  # the user's own models may be what is missing
        also = f"; the user's models were not read: {problem.line()}" if problem else ""
        raise ValueError(f"unknown model {name!r} (known: {', '.join(known)}){also}")
    return name


# A model field names a registered model of its family (checked against the registry, user models included).
RembgModel = Annotated[str, AfterValidator(partial(_model_of_family, family="rembg"))]
RealesrganModel = Annotated[str, AfterValidator(partial(_model_of_family, family="realesrgan"))]
WhisperModelName = Annotated[str, AfterValidator(partial(_model_of_family, family="whisper"))]


class _Strict(BaseModel):
    # Unknown keys, values of the wrong type (no `true` for a number, no "4" for 4) and
    # NaN or infinity are all refused: a recipe (or an event's payload) is checked whole.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class RemoveBackgroundOptions(_Strict):
    enabled: bool = True
    model: RembgModel = "u2netp"
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = Field(240, ge=0, le=255)
    alpha_matting_background_threshold: int = Field(10, ge=0, le=255)
    alpha_matting_erode_size: int = Field(10, ge=0, le=100)
    decontaminate: bool = False
    post_process_mask: bool = False
    mask_only: bool = False
    background: str | None = None  # "#rrggbb": a solid colour instead of transparency


    @field_validator("background")
    @classmethod
    def _hex_colour(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"#[0-9a-fA-F]{6}", v):
            raise ValueError("must be a colour like '#ffffff'")
        return v.lower() if v else v


class UpscaleOptions(_Strict):
    enabled: bool = True
    method: Literal["realesrgan", "lanczos"] = "realesrgan"
    model: RealesrganModel = "realesr-animevideov3"
    scale: Literal[2, 3, 4] = 2
    tile: int = Field(256, ge=32, le=2048)
    tile_overlap: int = Field(16, ge=0, le=128)



class ImageRecipe(_Strict):
    device: Device = "cpu"
    max_pixels: int = Field(100_000_000, ge=1)  # input guard against decompression bombs
    max_output_pixels: int = Field(400_000_000, ge=1)
    remove_background: RemoveBackgroundOptions = RemoveBackgroundOptions()
    upscale: UpscaleOptions = UpscaleOptions()


class TranscribeOptions(_Strict):
    enabled: bool = True
    model: WhisperModelName = "whisper-base"  # a registered Whisper model (CTranslate2); whisper-tiny.en: English only, fast
    # "auto" (or None): detect it, window by window, weighted by speech (an English-only model means en).
    # Letters only here; whether Whisper knows the code is checked when the model loads (a RecipeError naming it).
    language: str | None = Field("auto", pattern=r"^[A-Za-z]{2,16}$")
    # "en": also an English translation (Whisper's translate task) when the speech is not English; None: never.
    translate_to: Literal["en"] | None = "en"
    # Names, brands, places: given to the model as hotwords, and their spelling restored in the text.
    glossary: list[str] = Field(default_factory=list, max_length=200)
    # Terms whose cues are flagged in the manifest and the run's summary (held for review).
    forbidden: list[str] = Field(default_factory=list, max_length=500)
    device: Device = "cpu"
    compute_type: str = "int8"  # int8 | int8_float16 | float16 | float32 ... (CTranslate2's names)
    cpu_threads: int = Field(0, ge=0, le=256)  # 0: this asset's share of the cores (models.threads_per_asset)
    beam_size: int = Field(5, ge=1, le=20)
    vad: bool = True  # Silero VAD (ships inside faster-whisper) skips silence
    window_seconds: float = Field(60.0, ge=10, le=7200)  # audio decoded and transcribed a window at a time (its samples: about 4 MiB a minute, plus Whisper's features)


    @field_validator("compute_type")
    @classmethod
    def _known_compute_type(cls, v: str) -> str:
        if v not in COMPUTE_TYPES:
            raise ValueError(f"unknown compute type {v!r} (one of: {', '.join(COMPUTE_TYPES)})")
        return v

    @field_validator("glossary", "forbidden")
    @classmethod
    def _terms(cls, v: list[str]) -> list[str]:
        terms = [" ".join(t.split()) for t in v]
        if any(not t or len(t) > 100 for t in terms):
            raise ValueError("each term must be 1 to 100 characters, not blank")
        return terms

    @property
    def detect(self) -> bool:
        """True when the language is to be detected (`auto`, or None)."""
        return self.language is None or self.language.lower() == "auto"


class SubtitleOptions(_Strict):
    """Broadcast timing rules (the defaults follow common broadcaster guidelines)."""

    enabled: bool = True
    max_chars_per_line: int = Field(42, ge=10, le=100)
    max_lines: int = Field(2, ge=1, le=4)
    min_duration: float = Field(5 / 6, ge=0.1, le=10)  # seconds
    max_duration: float = Field(7.0, ge=1, le=30)
    max_chars_per_second: float = Field(17.0, ge=5, le=60)
    min_gap_frames: int = Field(2, ge=0, le=25)  # between consecutive cues
    fps: float = Field(25.0, gt=0, le=240)  # frame rate for gaps when the media has none (audio)
    long_pause: float = Field(1.0, gt=0, le=30)  # silence (s) that ends a cue, where a break is allowed
    gap_close_frames: int = Field(12, ge=0, le=100)  # a gap shorter than this is closed to min_gap_frames
    shot_change_frames: int = Field(12, ge=0, le=100)  # no in/out time this close to a shot change unless on it
    shot_changes: bool = True  # footage: find the cuts (ffmpeg scene detection) and time cues to them
    shot_threshold: float = Field(0.3, gt=0, lt=1)  # ffmpeg's scene score above which a frame is a cut

    @model_validator(mode="after")
    def _durations_in_order(self) -> SubtitleOptions:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration must not exceed max_duration")
        return self


class LoudnessOptions(_Strict):
    """EBU R128 loudness normalisation (ffmpeg loudnorm, two passes: measure, then apply)."""

    enabled: bool = True
    integrated_lufs: float = Field(-23.0, ge=-70, le=-5)  # -23 broadcast (EBU R128), -16 web
    true_peak_dbtp: float = Field(-1.0, ge=-9, le=0)
    loudness_range_lu: float = Field(7.0, ge=1, le=50)


class AudioRecipe(_Strict):
    loudness: LoudnessOptions = LoudnessOptions()
    transcribe: TranscribeOptions = TranscribeOptions()
    subtitles: SubtitleOptions = SubtitleOptions()


class DenoiseOptions(_Strict):
    method: Literal["hqdn3d", "nlmeans", "off"] = "hqdn3d"  # nlmeans: better, much slower


class VideoUpscaleOptions(UpscaleOptions):
    """As for stills, plus a target height; Lanczos by default (a learned upscale is per frame, slow)."""

    method: Literal["lanczos", "realesrgan"] = "lanczos"
    target_height: int | None = Field(None, ge=16, le=8640)  # instead of scale; width keeps the aspect
    # ×scale, but never past this delivery height; a source at or above it keeps its size. null: no cap.
    max_height: int | None = Field(2160, ge=16, le=8640)


class EncodeOptions(_Strict):
    crf: int = Field(18, ge=0, le=51)  # libx264 quality: lower is better
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = "medium"


class PackageOptions(_Strict):
    soft_subtitles: bool = True  # a mov_text track in video.mp4, language tagged
    burn_in: bool = False  # also video.burned.mp4 with the subtitles drawn in (libass)
    # ISO 639-2 tag of a lone SRT given without a language; the flows tag each track with its transcript's language.
    subtitle_language: str = Field("eng", pattern=r"^[a-z]{3}$")
    # Which track burn-in draws: None, the spoken language's; "en" (or "eng"): the English translation where there is one.
    burn_in_language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")


MatteOutput = Literal["matte.mov", "matte.mask.mp4"]


class MatteOptions(_Strict):
    """Rotoscoping: a matte of the subject for every frame of video.mp4 (rembg, streamed)."""

    enabled: bool = False
    model: RembgModel = "u2netp"
    smoothing: bool = True  # motion-gated moving average over time: less flicker, no lag on motion
    # matte.mov: the picture over transparency, ProRes 4444 with alpha; matte.mask.mp4: a luma matte (H.264)
    outputs: list[MatteOutput] = Field(default_factory=lambda: ["matte.mov"], min_length=1, max_length=2)

    @field_validator("outputs")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("name each output once")
        return v


class FootageRecipe(_Strict):
    device: Device = "cpu"
    denoise: DenoiseOptions = DenoiseOptions()
    loudness: LoudnessOptions = LoudnessOptions()
    upscale: VideoUpscaleOptions = VideoUpscaleOptions()
    encode: EncodeOptions = EncodeOptions()
    transcribe: TranscribeOptions = TranscribeOptions()
    subtitles: SubtitleOptions = SubtitleOptions()
    package: PackageOptions = PackageOptions()
    matte: MatteOptions = MatteOptions()


class RetryOptions(_Strict):
    """Retries for transient failures only (a busy API, a flaky share); bad input is never retried."""

    attempts: int = Field(2, ge=0, le=10)
    delay_seconds: float = Field(5.0, ge=0, le=3600)  # the first wait; each later one doubles


class LimitOptions(_Strict):
    """Machine-wide slots for the heavy steps, shared by every run on this host (0: no limit)."""

    transcribe: int = Field(1, ge=0, le=64)
    render_video: int = Field(1, ge=0, le=64)


class RunOptions(_Strict):
    concurrency: int = Field(2, ge=1, le=64)  # assets in flight at once
    retries: RetryOptions = RetryOptions()
    limits: LimitOptions = LimitOptions()
    # A served or deployed run whose process died (killed, OOM, machine lost) is run again this many times.
    crash_retries: int = Field(2, ge=0, le=10)


DEFAULT_IGNORE = (".*", "~$*", "*.part", "*.tmp", "*.crdownload", "*.partial", "*.download", "*.!qB")


class InboxOptions(_Strict):
    """How `assetline serve` and `assetline watch` see files arrive, and the scheduled batch."""

    observer: Literal["native", "polling"] = "native"  # polling: network shares (NFS, SMB) miss inotify events
    poll_seconds: float = Field(1.0, gt=0, le=600)  # how often sizes are checked (and the polling observer looks)
    hold_seconds: float = Field(2.0, ge=0, le=3600)  # a file must be unchanged this long to count as arrived
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))  # partial and hidden files
    batch_cron: str = "0 2 * * *"  # the batch-inbox deployment's schedule (nightly at 02:00)
    timezone: str = "UTC"

    @field_validator("batch_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=v)
        except ValueError:
            raise ValueError(f"not a cron expression: {v!r}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class ProvenanceOptions(_Strict):
    """What every output's Content Credentials (C2PA manifest) declare beyond what was done to it."""

    # The training-and-data-mining assertion (CAWG): may the output be used to train AI
    # models, for generative training, for inference, for data mining. One value for all four.
    training_mining: Literal["allowed", "notAllowed", "constrained"] = "notAllowed"


ReviewFlag = Literal["forbidden", "language_uncertain", "low_confidence", "subtitle_exceptions", "soft_matte"]
AssetKind = Literal["image", "video", "audio"]


class ReviewOptions(_Strict):
    """When a person approves outputs before they are delivered (held in OUT/.review/ until then)."""

    # never: deliver at once; flagged: hold an asset any of `flags` fires on; always: hold every asset.
    required: Literal["never", "flagged", "always"] = "flagged"
    # The default set holds back strong signals only, so unattended work keeps flowing.
    flags: list[ReviewFlag] = Field(default_factory=lambda: ["forbidden", "language_uncertain", "low_confidence"])
    min_language_probability: float = Field(0.8, ge=0, le=1)  # language_uncertain: detected below this
    min_confidence: float = Field(0.5, ge=0, le=1)  # low_confidence: mean word probability below this
    max_soft_matte: float = Field(0.25, ge=0, le=1)  # soft_matte: more of the subject than this has alpha in 5..250
    kinds: list[AssetKind] = Field(default_factory=lambda: ["image", "video", "audio"])  # what the policy applies to


class VersionOptions(_Strict):
    """Earlier versions of an asset's outputs, kept under OUT/<asset>/.versions/vNNN/."""

    # How many versions to keep, the current one counted: the oldest go first, never the
    # current one nor the latest a person approved.
    keep: int = Field(5, ge=1, le=1000)


class Recipe(_Strict):
    run: RunOptions = RunOptions()
    inbox: InboxOptions = InboxOptions()
    image: ImageRecipe = ImageRecipe()
    audio: AudioRecipe = AudioRecipe()
    video: FootageRecipe = FootageRecipe()
    provenance: ProvenanceOptions = ProvenanceOptions()
    review: ReviewOptions = ReviewOptions()
    versions: VersionOptions = VersionOptions()

    def required_models(self) -> list[str]:
        """The registered models this recipe will load."""
        image = self.image
        needed = []
        if image.remove_background.enabled:
            needed.append(image.remove_background.model)
        if image.upscale.enabled and image.upscale.method == "realesrgan":
            needed.append(image.upscale.model)
        if self.audio.transcribe.enabled:
            needed.append(self.audio.transcribe.model)
        video = self.video
        if video.upscale.enabled and video.upscale.method == "realesrgan":
            needed.append(video.upscale.model)
        if video.transcribe.enabled:
            needed.append(video.transcribe.model)
        if video.matte.enabled:
            needed.append(video.matte.model)
        return list(dict.fromkeys(needed))

    def section_sha256(self, kind: str) -> str:
        """Digest of the part of the recipe that shapes one kind's outputs.

        Changing an image setting reprocesses images, not footage; `run`
        settings (concurrency) change no output and are left out. The
        `provenance` section goes into every kind's: it is in every output's
        signed manifest.
        """
        section = getattr(self, kind).model_dump(mode="json")
        signed = self.provenance.model_dump(mode="json")
        canonical = json.dumps({"kind": kind, kind: section, "provenance": signed}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
