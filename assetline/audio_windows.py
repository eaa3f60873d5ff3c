"""Sound for transcription: any media's audio decoded to mono 16 kHz, a window at a time, cut where it is quiet.

PyAV and numpy only (no Prefect, no model): memory holds one window however long the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from assetline.errors import BadInputError
from assetline.media import probe_kind

SAMPLE_RATE = 16_000  # what Whisper's feature extractor takes

_Frame = TypeVar("_Frame")


def audio_windows(source: Path, window_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """Mono float32 samples at 16 kHz, a window at a time, each cut at the quietest moment near its end.

    Yields (offset in seconds, samples); the last window holds the rest (possibly
    no samples). Memory holds one window plus its look-ahead (half a window, 20 s
    at most), however long the file: an hour of sound is never in memory at once.
    A still image, a file without an audio stream or one that does not decode is
    a `BadInputError`.
    """
    import av

    kind = probe_kind(source)  # BadInputError for empty, unreadable or unrecognised files
    if kind == "image":
        raise BadInputError(source, "is a still image: there is no sound to transcribe")
    window = int(window_seconds * SAMPLE_RATE)
    lookahead = int(min(20.0, window_seconds / 2) * SAMPLE_RATE)
    offset = 0
    pending: list[np.ndarray] = []
    pending_len = 0
    try:
        with av.open(str(source), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise BadInputError(source, "has no audio stream to transcribe")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            frames = container.decode(container.streams.audio[0])
            for frame in _then_flush(frames):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    pending.append(chunk)
                    pending_len += len(chunk)
                while pending_len >= window + lookahead:
                    buffer = np.concatenate(pending)
                    cut = quiet_cut(buffer, window - lookahead, window + lookahead)
                    yield offset / SAMPLE_RATE, buffer[:cut]
                    offset += cut
                    pending, pending_len = [buffer[cut:]], len(buffer) - cut
    except BadInputError:
        raise
    except Exception as exc:  # PyAV raises many types for damaged streams
        raise BadInputError(source, f"cannot decode the audio ({exc})") from None
    rest = np.concatenate(pending) if pending else np.zeros(0, np.float32)
    yield offset / SAMPLE_RATE, rest


def _then_flush(frames: Iterable[_Frame]) -> Iterator[_Frame | None]:
    yield from frames
    yield None  # flushes the resampler


def quiet_cut(samples: np.ndarray, lo: int, hi: int) -> int:
    """The middle of the quietest 0.2 s between samples lo and hi: a cut there splits no word."""
    step = SAMPLE_RATE // 5
    region = samples[lo:hi]
    n = len(region) // step
    if n == 0:
        return hi
    energy = (region[: n * step].reshape(n, step) ** 2).mean(axis=1)
    return lo + int(np.argmin(energy)) * step + step // 2
