"""Reading media: what a file is (by content, never by extension) and loading stills safely.

Images are identified with Pillow; anything else is probed with PyAV (the
pip-shipped ffmpeg has no ffprobe). Loading applies EXIF orientation and brings
every pixel format (CMYK, palette, 16-bit, greyscale, with or without alpha)
to 8-bit RGB plus an optional alpha channel.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from assetline.errors import BadInputError
from assetline.failures import describe_read_error, input_errors

Kind = Literal["image", "video", "audio"]

# assetline checks the pixel count itself (recipe `image.max_pixels`) before decoding.
Image.MAX_IMAGE_PIXELS = None


def _exception_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def probe_kind(path: Path) -> Kind:
    """`image`, `video` or `audio`, decided by the file's content.

    Raises `BadInputError` for an empty, unreadable, or unrecognised file.
    """
    with input_errors(path), open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise BadInputError(path, "file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - the header parsed
        return "image"
    except UnidentifiedImageError:
        pass
    except OSError as exc:
        raise BadInputError(path, describe_read_error(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # an image format's own check failed on a corrupt header (ValueError, struct.error)
        try:
            return _probe_av_kind(path)  # unless it is media after all
        except BadInputError:
            raise BadInputError(path, f"image is corrupt ({_exception_text(exc)})") from None
    return _probe_av_kind(path)


def _probe_av_kind(path: Path) -> Kind:
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            # Pillow has already refused the file: an image demuxer that accepts it has only
            # matched the file name's extension (a text file named .png), not the content.
            name = container.format.name
            if name == "image2" or name.endswith("_pipe"):
                raise BadInputError(path, "not a recognised image, video or audio file")
            has_video = any(
                s.type == "video" and not is_cover_art(s) for s in container.streams
            )
            has_audio = any(s.type == "audio" for s in container.streams)
    except BadInputError:
        raise
    except Exception as exc:  # PyAV raises many types for junk input
        raise BadInputError(path, "not a recognised image, video or audio file") from exc
    if has_video:
        return "video"
    if has_audio:
        return "audio"
    raise BadInputError(path, "media file has no video or audio stream")


def is_cover_art(stream) -> bool:
    disposition = getattr(stream, "disposition", None)
    try:
        import av

        return bool(disposition & av.stream.Disposition.attached_pic)
    except Exception:
        return False


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float | None


@dataclass(frozen=True)
class MediaInfo:
    """What a time-based file holds, as PyAV reads it."""

    container: str
    duration: float | None  # seconds
    video: VideoInfo | None
    audio: AudioInfo | None


def probe(path: Path) -> MediaInfo:
    """Streams and duration of an audio or video file; `BadInputError` if PyAV can't read it."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            video = next((s for s in container.streams.video if not is_cover_art(s)), None)
            audio = next(iter(container.streams.audio), None)
            duration = container.duration / av.time_base if container.duration else None
            v = a = None
            if video is not None:
                rate = video.average_rate or video.guessed_rate
                cc = video.codec_context
                v = VideoInfo(cc.name, cc.width, cc.height, float(rate) if rate else None)
            if audio is not None:
                cc = audio.codec_context
                a = AudioInfo(cc.name, cc.sample_rate, cc.channels)
            return MediaInfo(container.format.name, duration, v, a)
    except Exception as exc:
        raise BadInputError(path, f"cannot read media: {exc}") from None


@dataclass
class LoadedImage:
    """A still ready for the models: 8-bit RGB, an optional 8-bit alpha, and what was done."""

    rgb: Image.Image
    alpha: Image.Image | None
    source_mode: str
    source_size: tuple[int, int]
    orientation_applied: bool
    icc_profile: bytes | None


def check_pixel_limit(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise BadInputError(
            path,
            f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (recipe image.max_pixels)",
        )


def load_image(path: Path, max_pixels: int) -> LoadedImage:
    """Decode a still fully, refusing bombs and truncated files with a clear error."""
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise BadInputError(path, "not a recognised image") from None
    except OSError as exc:
        raise BadInputError(path, describe_read_error(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # a format's own check on a corrupt header (ValueError, struct.error, ...)
        raise BadInputError(path, f"image is corrupt ({_exception_text(exc)})") from None
    with img:
        check_pixel_limit(path, img.size, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc) or type(exc).__name__
            if "truncated" in msg or "broken" in msg.lower() or isinstance(exc, SyntaxError):
                raise BadInputError(path, f"image is truncated or corrupt ({msg})") from None
            raise BadInputError(path, f"cannot decode image ({msg})") from None
        except MemoryError:
            raise
        except Exception as exc:  # a decoder's own failure on corrupt data (struct.error, IndexError, ...)
            raise BadInputError(path, f"image is truncated or corrupt ({_exception_text(exc)})") from None
        source_mode = img.mode
        source_size = img.size
        icc = img.info.get("icc_profile")
        oriented = ImageOps.exif_transpose(img)
        orientation_applied = oriented.size != img.size or _orientation_tag(img) not in (None, 1)
        rgb, alpha = _to_rgb_and_alpha(oriented, icc)
    if source_mode == "CMYK" and icc:
        icc = None  # converted to sRGB: the CMYK profile no longer describes the pixels
    return LoadedImage(rgb, alpha, source_mode, source_size, orientation_applied, icc)


def _orientation_tag(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring 16-bit and 32-bit single-channel images to 8-bit by their full range."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) <= 65535):
        scaled = arr.astype(np.uint32) >> 8
    else:
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
        scaled = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo if hi > lo else 1.0))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


def _to_rgb_and_alpha(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, Image.Image | None]:
    mode = img.mode
    if mode == "CMYK":
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"), None
            except Exception:
                pass  # a broken profile: fall back to Pillow's plain conversion
        return img.convert("RGB"), None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_8bit(img).convert("RGB"), None
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    return img.convert("RGB"), None
