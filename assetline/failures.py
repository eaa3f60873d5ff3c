"""One mapping from a failure to the line a user reads: which errno, or which words in ffmpeg's stderr, mean what.

As httpx maps httpcore's exceptions (`map_httpcore_exceptions`: one table, `raise
mapped(message) from exc`): `output_errors` and `input_errors` turn an OSError into
assetline's one-line errors, and `ffmpeg_error` reads the same causes out of
ffmpeg's stderr. A full disk is never blamed on the input, nor a corrupt input
on the output.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from assetline.errors import AssetlineError, BadInputError, OutputError


class Blame(Enum):
    """Whose fault an errno is when a library (Pillow, PyAV, c2pa) raises it while outputs are made."""

    OUTPUT = "output"  # only writing fails so (nothing is written to an input): the output's, whatever raised it
    NAMED_OUTPUT = "named output"  # reading can fail so too: the output's only when it names a file being written
    UNKNOWN = "unknown"  # not for us to judge from the errno alone


@dataclass(frozen=True)
class _WriteFailure:
    errnos: frozenset[int]
    line: str  # what the user reads after the file's name
    blame: Blame = Blame.OUTPUT
    ffmpeg_words: str | None = None  # the C library's words for the errno, as ffmpeg prints them
    ffmpeg_line: str | None = None  # what the user reads when ffmpeg says so (default: `line`)


# The one table. Order matters for ffmpeg's stderr: on each line, the first row whose words appear wins.
_WRITE_FAILURES = (
    _WriteFailure(frozenset({errno.ENOSPC}), "no space left on the output device", ffmpeg_words="No space left on device"),
    _WriteFailure(frozenset({errno.EDQUOT}), "no space left on the output device (disk quota exceeded)",
                  ffmpeg_words="Disk quota exceeded"),  # fmt: skip
    _WriteFailure(frozenset({errno.EROFS}), "output folder is not writable", ffmpeg_words="Read-only file system",
                  ffmpeg_line="output folder is not writable (read-only file system)"),  # fmt: skip
    # ffmpeg says "Permission denied" of an input too: its words count only on a line about its output.
    _WriteFailure(frozenset({errno.EACCES, errno.EPERM}), "output folder is not writable", Blame.NAMED_OUTPUT,
                  ffmpeg_words="Permission denied",
                  ffmpeg_line="output folder is not writable (permission denied)"),  # fmt: skip
    _WriteFailure(frozenset({errno.EXDEV}),
                  "output folder is on another file system than the output root (a mount inside it)",
                  Blame.UNKNOWN),  # fmt: skip
)

# ffmpeg's lines that name its output ("[out#0/mp4 @ 0x...]", "Error opening output file ...").
_ABOUT_OUTPUT = ("[out#", "Error opening output")
# Progress and summary lines say nothing about the cause.
_NOT_A_CAUSE = ("Conversion failed!", "frame=", "size=", "video:", "Error opening output files")


def _row(exc: OSError) -> _WriteFailure | None:
    return next((row for row in _WRITE_FAILURES if exc.errno in row.errnos), None)


def describe_os_error(exc: OSError) -> str:
    """The cause of a failure to write, as the user reads it ("no space left on the output device")."""
    row = _row(exc)
    return row.line if row is not None else exc.strerror or str(exc)


def blame(exc: OSError) -> Blame:
    """Whose fault `exc` is when a library raised it while outputs were being made (see `Blame`)."""
    row = _row(exc)
    return row.blame if row is not None else Blame.UNKNOWN


@contextmanager
def _reraised(subject: str | Path, error: type[AssetlineError], describe: Callable[[OSError], str]) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise error(subject, describe(exc)) from exc


def output_errors(subject: str | Path) -> AbstractContextManager[None]:
    """Turn an OSError raised inside into an `OutputError` naming `subject`, with the table's line."""
    return _reraised(subject, OutputError, describe_os_error)


def describe_read_error(exc: Exception) -> str:
    """The cause of a failure to open or read an input file ("cannot read file: permission denied")."""
    if isinstance(exc, PermissionError):
        return "cannot read file: permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read file: {exc.strerror}"
    return f"cannot read file: {exc}"


def input_errors(subject: str | Path) -> AbstractContextManager[None]:
    """Turn an OSError raised inside into a `BadInputError` naming `subject`."""
    return _reraised(subject, BadInputError, describe_read_error)


def ffmpeg_output_cause(stderr: str) -> str | None:
    """The output-side cause in ffmpeg's stderr (disk full, read-only, not writable), else None."""
    for line in stderr.splitlines():
        for row in _WRITE_FAILURES:
            if row.ffmpeg_words is None or row.ffmpeg_words not in line:
                continue
            if row.blame is Blame.NAMED_OUTPUT and not any(words in line for words in _ABOUT_OUTPUT):
                continue
            return row.ffmpeg_line or row.line
    return None


def ffmpeg_complaint(stderr: str) -> str | None:
    """ffmpeg's last line that says what went wrong (not a progress or summary line), else its last line, else None."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_NOT_A_CAUSE) and "] video:" not in line]
    return (meaningful or lines or [None])[-1]


def ffmpeg_error(
    stderr: str, subject: str | Path, *, output: str | Path | None, bad_input: bool, otherwise: str
) -> AssetlineError:
    """The one-line error for a failed ffmpeg run.

    A failure to write `output` (disk full, read-only or unwritable folder) is an
    `OutputError` naming it; anything else names `subject` with ffmpeg's own
    complaint (`otherwise` when it printed none): a `BadInputError` when
    `bad_input` says the input is at fault, else a processing error.
    """
    output_cause = ffmpeg_output_cause(stderr) if output is not None else None
    if output_cause:
        return OutputError(output, output_cause)
    error = BadInputError if bad_input else AssetlineError
    return error(subject, f"ffmpeg failed: {ffmpeg_complaint(stderr) or otherwise}")
