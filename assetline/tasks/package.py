"""Packaging: the finished picture, the normalised sound and the subtitles in one `video.mp4`.

`video.mp4` copies the picture's video stream untouched, carries the sound as
AAC and the subtitles as a soft mov_text track tagged with their language; on
request `video.burned.mp4` has the subtitles drawn into the picture by libass,
in the font the project ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pysubs2
from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline.config import EncodeOptions, PackageOptions
from assetline.errors import BadInputError
from assetline.ffmpeg import ffmpeg_python, run_ffmpeg
from assetline.media import MediaInfo, probe
from assetline.provenance import StepRecord, ToolRef, utc_now
from assetline.storage import atomic_path, sha256_file
from assetline.tasks._common import ffmpeg_tool

OUTPUT_NAME = "video.mp4"
BURNED_NAME = "video.burned.mp4"

AUDIO_CODEC = "aac"
AUDIO_BITRATE = "192k"
AUDIO_SAMPLE_RATE = 48_000

# DejaVu Sans (Bitstream Vera license, see fonts/LICENSE_DEJAVU), taken from the matplotlib
# 3.11.2 wheel. libass draws nothing, and ffmpeg does not fail, when it finds no font,
# and a machine without system fonts finds none; so burn-in always names this one.
# libass tries every file in the folder it is given as a font: the folder holds fonts only.
FONTS_DIR = Path(__file__).resolve().parents[1] / "fonts" / "ttf"
FONT_FILE = "DejaVuSans.ttf"
FONT_NAME = "DejaVu Sans"

# Sizes are in the script's 384x288 space (what ffmpeg gives an SRT), scaled to the
# frame's height. Size 16 keeps a 42-character line on one line even in a 4:3 frame,
# so libass never re-wraps the cues the subtitles step balanced; white on a black
# outline reads on any picture; the margin keeps the text inside the title-safe area.
BURN_IN_STYLE: dict[str, str | int | float] = {
    "FontName": FONT_NAME,
    "FontSize": 16,
    "PrimaryColour": "&H00FFFFFF",
    "OutlineColour": "&H00000000",
    "BorderStyle": 1,
    "Outline": 1.5,
    "Shadow": 0,
    "Alignment": 2,  # bottom centre
    "MarginV": 20,
}


@dataclass(frozen=True)
class _Stream:
    """How one stream gets into an output: the ffmpeg-python stream mapped, its output options, what provenance records."""

    stream: Any = None  # an input's stream (`input(path)["a:0"]`); None: no such stream
    options: dict[str, Any] = field(default_factory=dict)  # codec options
    parameters: dict[str, Any] | None = None  # None: no such stream
    note: str | None = None  # why there is none

    @property
    def mapped(self) -> list[Any]:
        return [self.stream] if self.stream is not None else []


def _sound(picture: Path, picture_in: Any, picture_info: MediaInfo, audio: Path | None) -> _Stream:
    """The normalised audio encoded as AAC; without it the picture's own sound (from `picture_in`), or none."""
    encode = {"c:a": AUDIO_CODEC, "b:a": AUDIO_BITRATE, "ar": AUDIO_SAMPLE_RATE}
    encoded = {"codec": AUDIO_CODEC, "bitrate": AUDIO_BITRATE, "sample_rate": AUDIO_SAMPLE_RATE, "action": "encode"}
    if audio is not None:
        return _Stream(ffmpeg_python.input(str(audio.resolve()))["a:0"], encode, {"source": audio.name, **encoded})
    own = picture_info.audio
    if own is None:
        return _Stream()
    own_sound = picture_in["a:0"]
    if own.codec == AUDIO_CODEC:
        copied = {"codec": own.codec, "sample_rate": own.sample_rate, "action": "copy"}
        return _Stream(own_sound, {"c:a": "copy"}, {"source": picture.name, **copied})
    return _Stream(own_sound, encode, {"source": picture.name, **encoded})


def _soft_track(srt: Path | None, cues: int, options: PackageOptions) -> _Stream:
    """The cues as a mov_text track tagged with their language, when there are any and the recipe wants it."""
    if srt is None:
        return _Stream(note="no subtitles given")
    if not options.soft_subtitles:
        return _Stream(note="soft subtitles off in the recipe")
    if cues == 0:
        return _Stream(note=f"{srt.name} has no cues: no subtitle track")
    return _Stream(
        ffmpeg_python.input(str(srt.resolve()), f="srt")["s:0"],
        {"c:s": "mov_text", "metadata:s:s:0": f"language={options.subtitle_language}"},
        {"codec": "mov_text", "language": options.subtitle_language, "cues": cues, "source": srt.name},
    )


def count_cues(srt: Path) -> int:
    """Cues in an SRT file; an empty file has none."""
    try:
        return len(pysubs2.load(str(srt), encoding="utf-8", format_="srt"))
    except OSError as exc:
        raise BadInputError(srt, f"cannot read subtitles: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, pysubs2.Pysubs2Error) as exc:
        raise BadInputError(srt, f"not readable as SRT ({exc})") from None


def _write_mp4(out: Path, streams: list[Any], options: dict[str, Any]) -> None:
    """Map `streams` into a fast-start `out` with `options`; `out` appears whole or not at all (`atomic_path`)."""
    with atomic_path(out) as tmp:
        # Absolute: a relative name could read as an option ("-x") or a protocol ("concat:").
        graph = ffmpeg_python.output(*streams, str(tmp.resolve()), **options, movflags="+faststart", f="mp4")
        run_ffmpeg(graph, out, output=out)


def force_style() -> str:
    """The libass style override burn-in uses, as the subtitles filter's `force_style` takes it."""
    return ",".join(f"{key}={value}" for key, value in BURN_IN_STYLE.items())


def draw_subtitles(picture: Any, srt: Path) -> Any:
    """`picture` with the `subtitles` filter drawing `srt` in the shipped font (ffmpeg-python escapes every path)."""
    return picture.filter("subtitles", filename=str(srt.resolve()), fontsdir=str(FONTS_DIR), force_style=force_style())


def _inputs_readable(picture: Path, audio: Path | None) -> MediaInfo:
    picture_info = probe(picture)
    if picture_info.video is None:
        raise BadInputError(picture, "has no video stream to package")
    if audio is not None and probe(audio).audio is None:
        raise BadInputError(audio, "has no audio stream")
    return picture_info


@task(name="package", cache_policy=NO_CACHE, persist_result=False)
def package(
    picture: Path,
    dest_dir: Path,
    audio: Path | None,
    subtitles_srt: Path | None,
    options: PackageOptions = PackageOptions(),
    encode: EncodeOptions = EncodeOptions(),
) -> list[StepRecord]:
    """Mux `dest_dir/video.mp4`; with `options.burn_in` and subtitles, also `dest_dir/video.burned.mp4`.

    Args:
        picture: an MP4 whose first video stream is the finished (cleaned, upscaled)
            H.264 picture; it is copied, never re-encoded, into `video.mp4`.
        dest_dir: folder the outputs are written to (a staging folder in a run).
        audio: the normalised sound (any file ffmpeg reads, FLAC 48 kHz from the
            loudness step), encoded as AAC 192 kb/s, 48 kHz. None keeps the picture's
            own sound (copied when it is AAC, else encoded the same way), or none.
        subtitles_srt: cues from the subtitles step, whose writer has already made
            the text literal (no styling or positioning codes). None, or a file with
            no cues, gives no subtitle track and nothing drawn.
        options: `soft_subtitles` (default on) adds a mov_text track tagged
            `subtitle_language` (ISO 639-2, default "eng"); `burn_in` (default off)
            also writes `video.burned.mp4` when `subtitles_srt` is given.
        encode: libx264 `crf` (default 18) and `preset` (default "medium") for the
            re-encode burn-in needs.

    Every stream is mapped explicitly; nothing is cut to the shortest stream. Both
    files are fast-start (the index before the media data) for progressive playback.
    Returns one StepRecord per file: "package" for `video.mp4`, then "burn_in"
    for `video.burned.mp4`.
    """
    started = utc_now()
    picture_info = _inputs_readable(picture, audio)
    cues = count_cues(subtitles_srt) if subtitles_srt is not None else 0
    tool = ffmpeg_tool()
    video_codec = picture_info.video.codec  # type: ignore[union-attr]  # checked above

    # video.mp4: the picture, then the sound, then the subtitles.
    picture_in = ffmpeg_python.input(str(picture.resolve()))
    sound = _sound(picture, picture_in, picture_info, audio)
    track = _soft_track(subtitles_srt, cues, options)
    _write_mp4(
        dest_dir / OUTPUT_NAME,
        [picture_in["v:0"], *sound.mapped, *track.mapped],
        {"c:v": "copy", **sound.options, **track.options},
    )
    parameters: dict[str, Any] = {
        "streams": ["video"] + (["audio"] if sound.parameters else []) + (["subtitles"] if track.parameters else []),
        "video": {"codec": video_codec, "action": "copy", "source": picture.name},
        "audio": sound.parameters,
        "subtitles": track.parameters,
        "faststart": True,
    }
    if track.note:
        parameters["subtitles_note"] = track.note
    if options.burn_in and subtitles_srt is None:
        parameters["burn_in_note"] = f"no subtitles to draw: no {BURNED_NAME}"
    # A mux changes no pixel or sample. With a subtitle track the file joins captured
    # picture and text a speech model wrote: IPTC's composite type. Without one, the step
    # adds nothing of its own ("digitalCapture", the lowest in the ordering), so the
    # manifest's disclosure comes from the steps that did change the media.
    records = [
        StepRecord(
            name="package",
            tool=tool,
            parameters=parameters,
            started_at=started,
            ended_at=utc_now(),
            digital_source_type="compositeWithTrainedAlgorithmicMedia" if track.parameters else "digitalCapture",
            output=OUTPUT_NAME,
        )
    ]
    if options.burn_in and subtitles_srt is not None:
        records.append(_burn_in(picture, picture_info, dest_dir, audio, subtitles_srt, cues, encode, tool))
    return records


def _burn_in(
    picture: Path,
    picture_info: MediaInfo,
    dest_dir: Path,
    audio: Path | None,
    subtitles_srt: Path,
    cues: int,
    encode: EncodeOptions,
    tool: ToolRef,
) -> StepRecord:
    """`video.burned.mp4`: the picture re-encoded with the cues drawn in, the sound as in `video.mp4`.

    An SRT without cues (a clip with no speech) still gives the file the recipe
    promises, with nothing drawn: the subtitles filter refuses an empty SRT.
    """
    started = utc_now()
    picture_in = ffmpeg_python.input(str(picture.resolve()))
    sound = _sound(picture, picture_in, picture_info, audio)
    drawn = cues > 0
    video = picture_in["v:0"]
    video_options = {
        "c:v": "libx264", "crf": encode.crf, "preset": encode.preset, "pix_fmt": "yuv420p",
        "fps_mode": "passthrough",  # every frame of the picture, none dropped or doubled
    }  # fmt: skip
    _write_mp4(
        dest_dir / BURNED_NAME,
        [draw_subtitles(video, subtitles_srt) if drawn else video, *sound.mapped],
        {**video_options, **sound.options},
    )
    parameters: dict[str, Any] = {
        "streams": ["video"] + (["audio"] if sound.parameters else []),
        "video": {"codec": "h264", "encoder": "libx264", "crf": encode.crf, "preset": encode.preset,
                  "pix_fmt": "yuv420p", "source": picture.name},
        "audio": sound.parameters,
        "subtitles": {
            "filter": "subtitles (libass)",
            "source": subtitles_srt.name,
            "cues": cues,
            "font": {"name": FONT_NAME, "file": FONT_FILE, "sha256": sha256_file(FONTS_DIR / FONT_FILE)},
            "style": BURN_IN_STYLE,
        },
        "faststart": True,
    }  # fmt: skip
    if not drawn:
        parameters["subtitles_note"] = "no cues: nothing drawn"
    # Drawn-in text a speech model wrote, on captured pictures: a composite. With nothing
    # drawn this is a plain re-encode, which adds no type of its own.
    return StepRecord(
        name="burn_in",
        tool=tool,
        parameters=parameters,
        started_at=started,
        ended_at=utc_now(),
        digital_source_type="compositeWithTrainedAlgorithmicMedia" if drawn else "digitalCapture",
        output=BURNED_NAME,
    )
