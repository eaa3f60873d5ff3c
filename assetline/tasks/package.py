"""Packaging: the finished picture, the normalised sound and the subtitles in one `video.mp4`.

`video.mp4` copies the picture's video stream untouched, carries the sound as
AAC and the subtitles as soft mov_text tracks, one per language, each tagged
with its ISO 639-2 code (spa, eng) and none forced on; on request
`video.burned.mp4` has one language's subtitles drawn into the picture by
libass, in the font the project ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pysubs2
from prefect import task
from prefect.cache_policies import NO_CACHE

from assetline.config import EncodeOptions, PackageOptions
from assetline.errors import BadInputError
from assetline.ffmpeg import ffmpeg_python, run_ffmpeg
from assetline.languages import iso639_2
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


class SubtitleTrack(NamedTuple):
    """One language's cues for a soft track: the SRT, and its ISO 639-2 code (or a Whisper code: `es` -> `spa`)."""

    srt: Path
    language: str


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


def _tracks(subtitles: Path | Sequence[SubtitleTrack] | None, options: PackageOptions) -> list[SubtitleTrack]:
    """The tracks to carry: a lone SRT is tagged `options.subtitle_language`; languages become ISO 639-2."""
    if subtitles is None:
        return []
    if isinstance(subtitles, Path):
        return [SubtitleTrack(subtitles, options.subtitle_language)]
    return [SubtitleTrack(Path(t.srt), iso639_2(t.language)) for t in subtitles]


def _soft_tracks(tracks: list[SubtitleTrack], cues: list[int], options: PackageOptions) -> tuple[list[_Stream], list[str]]:
    """One mov_text stream per track with cues, tagged with its language, when the recipe wants them; and the notes."""
    if not tracks:
        return [], ["no subtitles given"]
    if not options.soft_subtitles:
        return [], ["soft subtitles off in the recipe"]
    streams, notes = [], []
    for track, count in zip(tracks, cues):
        if count == 0:
            notes.append(f"{track.srt.name} has no cues: no subtitle track")
            continue
        i = len(streams)
        # No track is forced. The MP4 muxer itself marks the first track of each kind enabled
        # (players read it as the default one) whatever the dispositions say: recorded as such.
        streams.append(_Stream(
            ffmpeg_python.input(str(track.srt.resolve()), f="srt")["s:0"],
            {"c:s": "mov_text", f"metadata:s:s:{i}": f"language={track.language}", f"disposition:s:{i}": "0"},
            {"codec": "mov_text", "language": track.language, "cues": count, "source": track.srt.name,
             "default": i == 0, "forced": False},
        ))  # fmt: skip
    return streams, notes


def _burn_in_track(tracks: list[SubtitleTrack], options: PackageOptions) -> SubtitleTrack | None:
    """The track burn-in draws: the first (the spoken language's), or the one `burn_in_language` names."""
    if not tracks:
        return None
    if options.burn_in_language is None:
        return tracks[0]
    wanted = iso639_2(options.burn_in_language)
    return next((t for t in tracks if t.language == wanted), None)


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
    subtitles_srt: Path | Sequence[SubtitleTrack] | None,
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
            the text literal (no styling or positioning codes): one SRT (tagged
            `options.subtitle_language`), or `SubtitleTrack`s, one per language
            (the spoken one first). None, or files with no cues, give no track.
        options: `soft_subtitles` (default on) adds one mov_text track per
            language, tagged ISO 639-2, none forced (the muxer marks the first
            one the default); `burn_in` (default off) also writes
            `video.burned.mp4`, drawing the track `burn_in_language` names
            (default: the first).
        encode: libx264 `crf` (default 18) and `preset` (default "medium") for the
            re-encode burn-in needs.

    Every stream is mapped explicitly; nothing is cut to the shortest stream. Both
    files are fast-start (the index before the media data) for progressive playback.
    Returns one StepRecord per file: "package" for `video.mp4`, then "burn_in"
    for `video.burned.mp4`.
    """
    started = utc_now()
    picture_info = _inputs_readable(picture, audio)
    tracks = _tracks(subtitles_srt, options)
    cues = [count_cues(t.srt) for t in tracks]
    tool = ffmpeg_tool()
    video_codec = picture_info.video.codec  # type: ignore[union-attr]  # checked above

    # video.mp4: the picture, then the sound, then the subtitles.
    picture_in = ffmpeg_python.input(str(picture.resolve()))
    sound = _sound(picture, picture_in, picture_info, audio)
    soft, notes = _soft_tracks(tracks, cues, options)
    track_options = {k: v for t in soft for k, v in t.options.items()}
    _write_mp4(
        dest_dir / OUTPUT_NAME,
        [picture_in["v:0"], *sound.mapped, *[m for t in soft for m in t.mapped]],
        {"c:v": "copy", **sound.options, **track_options},
    )
    parameters: dict[str, Any] = {
        "streams": ["video"] + (["audio"] if sound.parameters else []) + ["subtitles"] * len(soft),
        "video": {"codec": video_codec, "action": "copy", "source": picture.name},
        "audio": sound.parameters,
        "subtitles": [t.parameters for t in soft] or None,
        "faststart": True,
    }
    if notes:
        parameters["subtitles_note"] = "; ".join(notes)
    burned = _burn_in_track(tracks, options)
    if options.burn_in and not tracks:
        parameters["burn_in_note"] = f"no subtitles to draw: no {BURNED_NAME}"
    elif options.burn_in and burned is None:
        parameters["burn_in_note"] = (
            f"no {options.burn_in_language} subtitles (have: {', '.join(t.language for t in tracks)}): "
            f"{BURNED_NAME} has nothing drawn"
        )
    # A mux changes no pixel or sample. With a subtitle track the file joins captured
    # picture and text a speech model wrote: IPTC's composite type. Without one, the step
    # adds nothing of its own ("digitalCapture", the lowest in the ordering), so the
    # manifest's disclosure comes from the steps that did change the media.
    kind = "compositeWithTrainedAlgorithmicMedia" if soft else "digitalCapture"
    records = [StepRecord.finished("package", tool, started, kind, OUTPUT_NAME, parameters)]
    if options.burn_in and tracks:
        drawn = burned or tracks[0]
        count = cues[tracks.index(drawn)] if burned is not None else 0
        records.append(_burn_in(picture, picture_info, dest_dir, audio, drawn.srt, count, encode, tool, drawn.language))
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
    language: str | None = None,
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
            "language": language,
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
    kind = "compositeWithTrainedAlgorithmicMedia" if drawn else "digitalCapture"
    return StepRecord.finished("burn_in", tool, started, kind, BURNED_NAME, parameters)
