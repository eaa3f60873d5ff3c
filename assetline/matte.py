"""A clip's matte in one streaming pass, without Prefect: the rendered picture decoded frame by frame,
segmented at the model's resolution, smoothed over time, upsampled guided by the picture, and encoded as
ProRes 4444 with alpha (`matte.mov`) and/or a luma matte in H.264 (`matte.mask.mp4`).

The pass reads the rendered picture itself (`video.picture.mp4`, whose video stream `video.mp4` carries
unchanged), so the matte has its frames by construction: the same size, count and timestamps (variable
frame rate kept), the same pixel shape and display matrix. Nothing is dumped to disk; memory holds one
frame and the smoother's model-sized state, whatever the clip's length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assetline.errors import BadInputError, OutputError
from assetline.imaging.matte import TemporalSmoother, guided_upsample, luma, solid_levels
from assetline.storage import atomic_path
from assetline.video import output_pts, probe_picture

if TYPE_CHECKING:
    from assetline.progress import StepProgress

MOV, MASK = "matte.mov", "matte.mask.mp4"
PRORES, PRORES_PROFILE, PRORES_PIX_FMT = "prores_ks", "4444", "yuva444p10le"
MASK_CODEC, MASK_PIX_FMT = "libx264", "yuv420p"
# A matte is cut on, not watched: near-lossless, so a compositor's key sees the model's edge, not x264's.
MASK_CRF, MASK_PRESET = 10, "medium"
DEFAULT_MODEL_SIZE = (320, 320)  # when the model's input shape is not fixed
# Alpha strictly between these is neither subject nor background: the share of the subject that is, over the
# whole clip, is recorded as `soft_fraction` (the review policy's soft_matte flag reads it, as it measures cutouts).
SOFT_LOW, SOFT_HIGH = 5, 250


@dataclass
class MatteFrame:
    """One frame's matte at every stage: the model's, the smoothed one (model size), the delivered (picture size)."""

    raw: np.ndarray  # float32 0..1, model size, straight from the model
    kept: np.ndarray  # float32 0..1, model size, after temporal smoothing (== raw without it)
    alpha: np.ndarray  # uint8, picture size: guided upsample, then the solid levels


def model_size(session: Any) -> tuple[int, int]:
    """(width, height) the rembg session's net takes: from its ONNX input shape, else DEFAULT_MODEL_SIZE."""
    shape = session.inner_session.get_inputs()[0].shape
    h, w = shape[-2], shape[-1]
    return (w, h) if isinstance(w, int) and isinstance(h, int) else DEFAULT_MODEL_SIZE


class Matter:
    """Turns the frames of one clip, in order, into mattes: rembg's session at its own size, then smoothing
    (when on), the guided upsample to the picture's size and the levels that make a solid subject 255."""

    def __init__(self, session: Any, smoothing: bool = True) -> None:
        self.session = session
        self.size = model_size(session)
        self.smoother = TemporalSmoother() if smoothing else None

    def segment(self, small_rgb: np.ndarray) -> np.ndarray:
        """rembg's own mask (its pre- and post-processing) for a picture already at the model's size, as 0..1."""
        from PIL import Image

        mask = self.session.predict(Image.fromarray(small_rgb))[0]
        return np.asarray(mask, dtype=np.float32) / 255.0

    def frame(self, small_rgb: np.ndarray, guide: np.ndarray) -> MatteFrame:
        """The matte of one frame: `small_rgb` at the model's size, `guide` the picture's luma (0..1) at full size."""
        raw = self.segment(small_rgb)
        kept = self.smoother.update(raw, luma(small_rgb)) if self.smoother else raw
        return MatteFrame(raw, kept, solid_levels(guided_upsample(kept, guide) * 255.0))

    def video_frame(self, frame) -> tuple[np.ndarray, MatteFrame]:
        """A decoded PyAV frame's RGB (picture size) and its matte."""
        w, h = self.size
        small = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
        rgb = frame.to_ndarray(format="rgb24")
        return rgb, self.frame(small, luma(rgb))


def check_alpha_encoder() -> None:
    """This build's ProRes encoder must write alpha; without it matte.mov would be silently opaque."""
    import av

    try:
        codec = av.codec.Codec(PRORES, "w")
    except Exception:
        raise OutputError(MOV, f"this ffmpeg build has no {PRORES} encoder: ProRes 4444 with alpha cannot be written") from None
    formats = {f.name for f in codec.video_formats or ()}
    if PRORES_PIX_FMT not in formats:
        raise OutputError(MOV, f"this ffmpeg build's {PRORES} cannot write alpha ({PRORES_PIX_FMT} not among "
                               f"{', '.join(sorted(formats)) or 'its formats'}): the matte would be opaque")  # fmt: skip


def _stream(out, codec: str, pix_fmt: str, template, rate: Fraction, options: dict, matrix):
    """An output stream in the picture's own time base, pixel shape, colour tags and display matrix."""
    stream = out.add_stream(codec, rate=rate, options=options)
    cc = template.codec_context
    stream.width, stream.height, stream.pix_fmt = cc.width, cc.height, pix_fmt
    stream.codec_context.time_base = stream.time_base = template.time_base
    stream.codec_context.sample_aspect_ratio = template.sample_aspect_ratio or Fraction(1, 1)
    for key in ("color_primaries", "color_trc", "colorspace", "color_range"):
        value = getattr(cc, key)
        if value:
            setattr(stream.codec_context, key, value)
    if matrix is not None:
        stream.set_display_matrix(matrix)
    return stream


@dataclass
class MatteRun:
    """What the pass did: frames written, and the frame with the most transparency (for the alpha check)."""

    frames: int
    model_size: tuple[int, int]
    clearest_frame: int
    clearest_mean_alpha: float
    opaque_fraction: float  # of all pixels, 255
    clear_fraction: float  # of all pixels, 0
    soft_fraction: float | None  # of the subject's pixels (alpha > SOFT_LOW), those under SOFT_HIGH; None: no subject


def render_matte(
    picture: Path, dest_dir: Path, outputs: list[str], matter: Matter, progress: StepProgress | None = None
) -> MatteRun:
    """Decode `picture` (the rendered video) and write each of `outputs` (MOV, MASK) into `dest_dir`, whole or not at all.

    Raises `OutputError` when the encoder can't carry alpha, before any frame
    is made, or when the written matte.mov reads back without it.
    """
    import av

    if MOV in outputs:
        check_alpha_encoder()
    facts = probe_picture(picture)
    with contextlib.ExitStack() as files, av.open(str(picture)) as src:
        tmps = {name: files.enter_context(atomic_path(dest_dir / name)) for name in outputs}
        containers = {name: files.enter_context(av.open(str(tmp), "w", format="mov" if name == MOV else "mp4",
                                                        options={} if name == MOV else {"movflags": "+faststart"}))
                      for name, tmp in tmps.items()}  # fmt: skip
        video = src.streams.video[0]
        rate = Fraction(facts.fps).limit_denominator(1001) if facts.fps else Fraction(25)
        colorspace, color_range = video.codec_context.colorspace, video.codec_context.color_range
        streams = {}
        if MOV in containers:
            streams[MOV] = _stream(containers[MOV], PRORES, PRORES_PIX_FMT, video, rate,
                                   {"profile": PRORES_PROFILE, "alpha_bits": "16"}, facts.display_matrix)  # fmt: skip
        if MASK in containers:
            streams[MASK] = _stream(containers[MASK], MASK_CODEC, MASK_PIX_FMT, video, rate,
                                    {"crf": str(MASK_CRF), "preset": MASK_PRESET}, facts.display_matrix)  # fmt: skip
        duration = float(video.duration * video.time_base) if video.duration else None
        writer = _Writer(streams, containers, colorspace, color_range)
        frames, last = 0, None
        with writer:
            for frame in src.decode(video):
                rgb, matte = matter.video_frame(frame)
                last = output_pts(frame.pts, frame.time_base, Fraction(0), last)
                writer.put(frames, rgb, matte.alpha, last, frame.time_base)
                frames += 1
                if progress is not None and duration and frame.time is not None:
                    progress.update(float(frame.time) / duration)
            if frames == 0:
                raise BadInputError(picture, "no video frame could be decoded for the matte")
        for container in containers.values():
            container.close()
        clearest, tally = writer.clearest, writer.tally
        if MOV in tmps:
            verify_alpha(tmps[MOV], clearest[0], clearest[1])
    if progress is not None:
        progress.done()
    pixels, opaque, clear, subject, soft = tally
    return MatteRun(frames, matter.size, clearest[0], round(clearest[1], 3), opaque / pixels, clear / pixels,
                    soft / subject if subject else None)  # fmt: skip


class _Writer:
    """Encodes the mattes on a thread of its own while the model works on the next frame.

    PyAV releases the GIL in swscale and in the encoders, and onnxruntime in
    its run: on two cores the encode then fills the model's idle time instead
    of following it. The queue holds at most QUEUE frames (memory stays flat);
    an error in the thread stops the decode loop and is raised where it was put.
    Also tallies the alpha figures of `MatteRun` as it goes.
    """

    QUEUE = 3

    def __init__(self, streams: dict, containers: dict, colorspace, color_range) -> None:
        import queue
        import threading

        self.streams, self.containers = streams, containers
        self.colorspace, self.color_range = colorspace or None, color_range or None
        self.clearest = (0, 256.0)
        self.tally = [0, 0, 0, 0, 0]  # pixels, opaque, clear, subject, soft
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(self.QUEUE)
        self._thread = threading.Thread(target=self._run, name="matte-encode", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def put(self, index: int, rgb: np.ndarray, alpha: np.ndarray, pts: int, time_base) -> None:
        self._raise()
        self._queue.put((index, rgb, alpha, pts, time_base))

    def __exit__(self, kind, error, tb) -> None:
        self._queue.put(None)
        self._thread.join()
        if kind is None:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        ended = False
        try:
            while (item := self._queue.get()) is not None:
                self._write(*item)
            ended = True
            for name, stream in self.streams.items():
                for packet in stream.encode(None):
                    self.containers[name].mux(packet)
        except BaseException as e:  # re-raised in the decoding thread
            self.error = e
            while not ended and self._queue.get() is not None:  # drain, so the producer never blocks
                pass

    def _write(self, index: int, rgb: np.ndarray, alpha: np.ndarray, pts: int, time_base) -> None:
        import av

        mean = float(alpha.mean())
        if mean < self.clearest[1]:
            self.clearest = (index, mean)
        inside = alpha > SOFT_LOW
        for i, n in enumerate((alpha.size, np.count_nonzero(alpha == 255), np.count_nonzero(alpha == 0),
                               np.count_nonzero(inside), np.count_nonzero(inside & (alpha < SOFT_HIGH)))):  # fmt: skip
            self.tally[i] += int(n)
        for name, stream in self.streams.items():
            if name == MOV:
                out = av.VideoFrame.from_ndarray(np.dstack([rgb, alpha]), format="rgba")
                out = out.reformat(format=PRORES_PIX_FMT, dst_colorspace=self.colorspace, dst_color_range=self.color_range)
            else:
                out = av.VideoFrame.from_ndarray(alpha, format="gray").reformat(format=MASK_PIX_FMT)
            out.pts, out.time_base = pts, time_base
            for packet in stream.encode(out):
                self.containers[name].mux(packet)


def verify_alpha(path: Path, index: int, written_mean: float) -> None:
    """matte.mov as written must carry alpha: a pixel format with an alpha plane, and frame `index`'s decoded
    alpha as transparent as what was written (`written_mean`, 0..255). An opaque file is an `OutputError`."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pix_fmt = stream.codec_context.pix_fmt
        if pix_fmt is None or len(av.VideoFormat(pix_fmt).components) != 4:
            raise OutputError(MOV, f"encoded without alpha (pixel format {pix_fmt}): this build's ProRes drops it")
        for n, frame in enumerate(container.decode(stream)):
            if n == index:
                decoded = float(frame.to_ndarray(format="rgba")[..., 3].mean())
                if abs(decoded - written_mean) > 2.0:
                    raise OutputError(MOV, f"alpha lost in encoding: frame {n} reads back with mean alpha "
                                           f"{decoded:.1f}, {written_mean:.1f} was written")  # fmt: skip
                return
    raise OutputError(MOV, f"frame {index} of the matte could not be read back")


def alpha_frames(path: Path) -> Iterator[tuple[int | None, np.ndarray]]:
    """Each frame's (pts, alpha uint8) of matte.mov, or of matte.mask.mp4 (its luma), in order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        has_alpha = len(av.VideoFormat(stream.codec_context.pix_fmt).components) == 4
        for frame in container.decode(stream):
            yield frame.pts, frame.to_ndarray(format="rgba")[..., 3] if has_alpha else frame.to_ndarray(format="gray")


@dataclass
class SmoothingFigures:
    """Raw against smoothed over one run of frames: flicker per frame pair (alpha 0..255), edge shift per frame (px)."""

    raw_flicker: list[float]
    smoothed_flicker: list[float]
    edge_shift: list[float]

    @property
    def flicker_drop(self) -> float:
        """How much smoothing cut the mean flicker (0.6: by 60 %)."""
        raw = float(np.mean(self.raw_flicker)) if self.raw_flicker else 0.0
        return 1.0 - float(np.mean(self.smoothed_flicker)) / raw if raw else 0.0


def compare_smoothing(session: Any, frames: Iterator[np.ndarray]) -> SmoothingFigures:
    """Matte RGB `frames` once through the model, and judge the smoothed matte against the raw one.

    Both come from the same predictions (the raw one skips the smoother), are
    upsampled and levelled alike, and are measured at the picture's size.
    """
    from PIL import Image

    from assetline.imaging.matte import edge_shift, flicker

    matter = Matter(session, smoothing=True)
    w, h = matter.size
    figures = SmoothingFigures([], [], [])
    previous = None
    for rgb in frames:
        guide = luma(rgb)
        got = matter.frame(np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX)), guide)
        raw = solid_levels(guided_upsample(got.raw, guide) * 255.0)
        if previous is not None:
            figures.raw_flicker.append(flicker(previous[0], raw))
            figures.smoothed_flicker.append(flicker(previous[1], got.alpha))
        figures.edge_shift.append(edge_shift(raw, got.alpha))
        previous = raw, got.alpha
    return figures
