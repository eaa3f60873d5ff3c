"""A clip's picture in one streaming pass, without Prefect: the source's facts (PyAV), the Lanczos
graph (one ffmpeg run), and the frame pipe (ffmpeg -> NUT -> PyAV -> a function per frame -> libx264).

Either way every frame keeps its own timestamp (variable frame rate stays
variable, so subtitles stay in sync), the sample aspect ratio and the rotation
metadata survive, and the audio is copied unchanged. Nothing is dumped to disk
and memory does not grow with the clip's length.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from assetline.config import DenoiseOptions, EncodeOptions, VideoUpscaleOptions
from assetline.errors import BadInputError
from assetline.failures import ffmpeg_error
from assetline.ffmpeg import Filter, chain, command, ffmpeg_python, run_ffmpeg, start_ffmpeg
from assetline.lifetime import die_with_parent
from assetline.media import is_cover_art

if TYPE_CHECKING:
    import numpy as np

    from assetline.progress import StepProgress

# Spelled out so the manifest records exactly what ran. hqdn3d: ffmpeg's defaults, a light
# cleanup. nlmeans: s=3, since its default s=1 leaves ordinary sensor grain (sigma 3-6) untouched.
DENOISE = {
    "hqdn3d": Filter("hqdn3d", (4, 3, 6, 4.5)),  # luma/chroma spatial, luma/chroma temporal strength
    # strength (about the noise sigma), patch, research window
    "nlmeans": Filter("nlmeans", options={"s": 3.0, "p": 7, "r": 15}),
}
DENOISE_FILTERS = {method: str(f) for method, f in DENOISE.items()}  # as the manifest records them

PIX_FMT = "yuv420p"

# Frames a decoder may legitimately drop (a leading frame without its reference);
# more missing than this means the file ends early or is damaged.
MISSING_FRAMES_ALLOWED = 2


@dataclass(frozen=True)
class SourcePicture:
    """What the render keeps from the source's picture: size, shape, timing, orientation."""

    index: int  # stream index in the file (cover art is never picked)
    width: int  # coded size, before any rotation is applied for display
    height: int
    sar: Fraction
    fps: float | None  # average frame rate
    frames: int  # 0 when the container does not count them
    time_base: Fraction
    rotation: int  # degrees counter-clockwise, as the display matrix says
    display_matrix: tuple[int, ...] | None  # the raw 3x3 matrix, kept as is (flips included)
    audio_codecs: tuple[str, ...]

    def facts(self, vfr: bool | None) -> dict:
        return {
            "coded_size": [self.width, self.height],
            "sar": f"{self.sar.numerator}:{self.sar.denominator}",
            "fps": round(self.fps, 3) if self.fps else None,
            "vfr": vfr,
            "frames": self.frames or None,
            "time_base": str(self.time_base),
            "rotation": self.rotation,
        }


def probe_picture(path: Path) -> SourcePicture:
    """Read the video stream's facts with PyAV, decoding one frame for its display matrix.

    Raises `BadInputError` for junk, a truncated container, a file without video.
    """
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            video = next((s for s in container.streams.video if not is_cover_art(s)), None)
            if video is None:
                raise BadInputError(path, "has no video stream")
            cc = video.codec_context
            rate = video.average_rate or video.guessed_rate
            first = next(container.decode(video), None)
            if first is None:
                raise BadInputError(path, "no video frame could be decoded")
            matrix = first.side_data.get("DISPLAYMATRIX")
            return SourcePicture(
                index=video.index,
                width=cc.width,
                height=cc.height,
                sar=video.sample_aspect_ratio or Fraction(1, 1),
                fps=float(rate) if rate else None,
                frames=video.frames,
                time_base=video.time_base,
                rotation=first.rotation if matrix is not None else 0,
                display_matrix=struct.unpack("=9i", bytes(matrix)) if matrix is not None else None,
                audio_codecs=tuple(s.codec_context.name for s in container.streams.audio),
            )
    except BadInputError:
        raise
    except av.error.FFmpegError as exc:
        cause = _demuxer_complaint(path) or exc.strerror or type(exc).__name__
        raise BadInputError(path, f"cannot read video: {cause}") from None
    except Exception as exc:  # PyAV raises many types for junk input
        raise BadInputError(path, f"cannot read video: {exc}") from None


def _demuxer_complaint(path: Path) -> str | None:
    """ffmpeg's first error on opening `path` ("moov atom not found"): it says more than PyAV's error code.

    Asked of the ffmpeg binary because PyAV's log is process-wide and drops repeated messages.
    """
    opened = ffmpeg_python.input(str(path)).output("-", f="null", t=0)  # open it, decode nothing
    proc = subprocess.run(command(opened, "-v", "error"), capture_output=True, text=True, errors="replace",
                          timeout=60, preexec_fn=die_with_parent())  # fmt: skip
    for line in proc.stderr.splitlines():
        message = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())  # "[in#0 @ 0x55...] " names no file
        if message:
            return message
    return None


def output_timing(path: Path, source_tick: Fraction) -> tuple[int, bool | None]:
    """Frames in the rendered MP4, and whether the gaps between them differ (variable frame rate).

    Read from the output's sample index, which MP4 always has in full: its
    timestamps are the source's, which a Matroska source's index (key frames
    only) could not tell without reading the whole file. Gaps that differ by
    no more than one tick of the source's clock (30 fps in milliseconds: 33,
    33, 34) are rounding, not a varying rate.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        entries = stream.index_entries
        if stream.frames < 3 or len(entries) != stream.frames:
            return stream.frames, None
        gaps = {b.timestamp - a.timestamp for a, b in pairwise(entries)}
        spread = (max(gaps) - min(gaps)) * stream.time_base
        return stream.frames, spread > source_tick + stream.time_base


def check_complete(source: Path, picture: SourcePicture, frames_out: int) -> None:
    """A container that lists more frames than could be decoded is truncated or damaged."""
    if picture.frames and frames_out < picture.frames - MISSING_FRAMES_ALLOWED:
        raise BadInputError(
            source, f"truncated or damaged: only {frames_out} of {picture.frames} video frames could be decoded"
        )


def _even(x: float) -> int:
    return max(2, int(x / 2 + 0.5) * 2)


def output_size(width: int, height: int, upscale: VideoUpscaleOptions) -> tuple[int, int]:
    """Coded output size: ×scale capped at `max_height`, or `target_height`; the width keeps the aspect; both even.

    Heights are coded heights: for phone footage stored sideways with rotation
    metadata, the short side, as with "1080p". The cap never shrinks a source:
    one at or above it keeps its size (4K stays 4K), one below it grows ×scale
    up to the cap (1080p ×2 is 2160p; 1440p ×2 is 2160p too, not 2880p).
    """
    if not upscale.enabled:
        return _even(width), _even(height)
    if upscale.target_height:
        h = _even(upscale.target_height)
        return _even(width * h / height), h
    h = height * upscale.scale
    if upscale.max_height:
        h = min(h, max(height, upscale.max_height))
    return _even(width * h / height), _even(h)


def _denoise_filters(denoise: DenoiseOptions) -> list[Filter]:
    return [DENOISE[denoise.method]] if denoise.method != "off" else []


def render_lanczos(
    source: Path, tmp: Path, picture: SourcePicture, size: tuple[int, int], denoise: DenoiseOptions,
    encode: EncodeOptions,
) -> dict:  # fmt: skip
    """One ffmpeg run into `tmp`: filters, libx264, audio copied. Returns the resize as recorded (filter, sar)."""
    sar = f"{picture.sar.numerator}/{picture.sar.denominator}"
    # Lanczos on the coded picture; setsar puts back the source's pixel shape, which
    # scale would otherwise adjust.
    scale, setsar = Filter("scale", size, {"flags": "lanczos"}), Filter("setsar", (sar,))
    resize = [scale] if size != (picture.width, picture.height) else []
    # Keep the picture stored as it is, with its display matrix, rather than turning it upright.
    source_in = ffmpeg_python.input(str(source), noautorotate=None)
    picture_out = chain(source_in[str(picture.index)], [*_denoise_filters(denoise), *resize, setsar])
    graph = ffmpeg_python.output(picture_out, source_in["a?"], str(tmp), **{
        # Each frame keeps its timestamp: no frames dropped or duplicated to make a constant rate.
        "fps_mode": "passthrough", "enc_time_base:v": "demux",
        "c:v": "libx264", "crf": encode.crf, "preset": encode.preset, "pix_fmt": PIX_FMT,
        "c:a": "copy", "movflags": "+faststart", "f": "mp4",
    })  # fmt: skip
    run_ffmpeg(graph, source, bad_input=True)
    return {"filter": f"{scale},{setsar}", "sar": sar.replace("/", ":")}


def decoded_frames(source: Path, picture: SourcePicture, denoise: DenoiseOptions) -> Iterator:
    """RGB frames of the source, denoised by ffmpeg, streamed through a pipe with their timestamps.

    NUT carries any time base exactly, so variable frame rate survives the pipe.
    Timestamps come through as the source has them (`-copyts`): the caller
    shifts picture and sound by the same amount (`output_pts`, `audio_packets`).
    """
    import av

    source_in = ffmpeg_python.input(str(source), noautorotate=None)
    frames = chain(source_in[str(picture.index)], [*_denoise_filters(denoise), Filter("format", ("rgb24",))])
    raw = frames.output("pipe:1", **{"fps_mode": "passthrough", "enc_time_base:v": "demux", "c:v": "rawvideo",
                                     "f": "nut"})  # fmt: skip
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty ffmpeg can't block on it
        proc = start_ffmpeg(command(raw, "-loglevel", "error", "-copyts"), stdout=subprocess.PIPE, stderr=errors)
        broken = None
        try:
            try:
                with av.open(proc.stdout, format="nut") as pipe:
                    yield from pipe.decode(pipe.streams.video[0])
            except av.error.FFmpegError as exc:  # the pipe ended mid-frame or never started
                broken = exc
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the caller stopped early (an error downstream)
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if code != 0 or broken is not None:
            errors.seek(0)
            stderr = errors.read().decode(errors="replace")
            otherwise = f"exit code {code}" if code else f"broken pipe ({broken})"
            raise ffmpeg_error(stderr, source, output=None, bad_input=True, otherwise=otherwise)


def output_pts(pts: int | None, time_base: Fraction, start: Fraction, last: int | None) -> int:
    """A frame's timestamp moved back by the file's `start` (seconds), in its own `time_base`.

    The encoder needs rising timestamps: a frame without one, or with one not
    after the `last` frame's, takes the next tick after it.
    """
    shifted = pts - round(start / time_base) if pts is not None else None
    if shifted is None or (last is not None and shifted <= last):
        shifted = (last if last is not None else -1) + 1
    return shifted


def render_frames(
    source: Path, tmp: Path, picture: SourcePicture, size: tuple[int, int], denoise: DenoiseOptions,
    encode: EncodeOptions, enlarge: Callable[[np.ndarray], np.ndarray], progress: StepProgress,
) -> None:  # fmt: skip
    """Decode → `enlarge` (RGB in, RGB out) → `size` → encode into `tmp`, one frame at a time,
    with the source's audio packets interleaved; `progress` hears how far it is (a no-op outside Prefect)."""
    import av

    with av.open(str(source), metadata_errors="ignore") as src:
        colour = src.streams[picture.index].codec_context
        colorspace, color_range = colour.colorspace, colour.color_range
        colour_tags = {k: getattr(colour, k) for k in ("color_primaries", "color_trc", "colorspace", "color_range")}
        # Picture and sound move back by the file's start time, as ffmpeg does on the Lanczos path.
        start = Fraction(src.start_time or 0, 1_000_000)
        metadata = {k: v for k, v in src.metadata.items() if k != "encoder"}
        duration = src.duration / av.time_base if src.duration else None  # for progress: no second probe

    with (
        av.open(str(source), metadata_errors="ignore") as sound,
        av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        out.metadata.update(metadata)
        audio_in = list(sound.streams.audio)
        for stream in sound.streams:
            if stream not in audio_in:
                stream.discard = av.stream.Discard.all
        audio_out = {s.index: out.add_stream_from_template(s) for s in audio_in}
        for s in audio_in:
            if s.language:
                audio_out[s.index].metadata["language"] = s.language
        audio = audio_packets(sound, audio_in, audio_out, start)
        pending = next(audio, None)

        def mux_audio_until(seconds: float | None) -> None:
            nonlocal pending
            while pending is not None and (seconds is None or pending[0] <= seconds):
                out.mux(pending[1])
                pending = next(audio, None)

        def mux_video(packet) -> None:
            # Audio up to this packet's time first, so the muxer never queues more than a moment.
            if packet.dts is not None:
                mux_audio_until(float(packet.dts * packet.time_base))
            out.mux(packet)

        video = None
        last_pts = None
        done_frames = 0
        for frame in decoded_frames(source, picture, denoise):
            done_frames += 1
            if duration and frame.time is not None:
                progress.update(float(frame.time) / duration)
            elif picture.frames:
                progress.update(done_frames / picture.frames)
            if video is None:
                video = add_encoder(out, frame.time_base, picture, size, encode, colour_tags)
            last_pts = output_pts(frame.pts, frame.time_base, start, last_pts)
            scaled = av.VideoFrame.from_ndarray(enlarge(frame.to_ndarray()), format="rgb24").reformat(
                width=size[0], height=size[1], format=PIX_FMT, interpolation="LANCZOS",
                dst_colorspace=colorspace or None, dst_color_range=color_range or None,
            )  # fmt: skip
            scaled.pts, scaled.time_base = last_pts, frame.time_base
            for packet in video.encode(scaled):
                mux_video(packet)
        if video is None:
            raise BadInputError(source, "no video frame could be decoded")
        for packet in video.encode(None):
            mux_video(packet)
        mux_audio_until(None)
        progress.done()


def add_encoder(
    out, time_base: Fraction, picture: SourcePicture, size: tuple[int, int], encode: EncodeOptions, colour_tags: dict
):
    """libx264 in the picture's own time base, with its pixel shape, colour tags and display matrix."""
    rate = Fraction(picture.fps).limit_denominator(1001) if picture.fps else Fraction(25)
    video = out.add_stream("libx264", rate=rate, options={"crf": str(encode.crf), "preset": encode.preset})
    video.width, video.height, video.pix_fmt = size[0], size[1], PIX_FMT
    video.codec_context.time_base = time_base
    video.time_base = time_base
    video.codec_context.sample_aspect_ratio = picture.sar
    for key, value in colour_tags.items():
        if value:
            setattr(video.codec_context, key, value)
    if picture.display_matrix is not None:
        video.set_display_matrix(picture.display_matrix)
    return video


def audio_packets(sound, audio_in: list, audio_out: dict, start: Fraction) -> Iterator[tuple[float, object]]:
    """The source's audio packets, shifted back by `start` (seconds) like the picture, with their times."""
    if not audio_in:
        return
    for packet in sound.demux(*audio_in):
        if packet.dts is None and packet.pts is None:
            continue  # the demuxer's end-of-stream marker
        shift = round(start / packet.time_base)
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        when = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
        packet.stream = audio_out[packet.stream.index]
        yield when, packet
