"""One exception family: every error names the file (or model) and the cause.

The CLI turns these into one clear line and an exit code; Prefect marks the
flow run failed with the same message.
"""

from __future__ import annotations

from pathlib import Path


class AssetlineError(Exception):
    """Base of all assetline errors: `subject` (a path or a name) and `cause`."""

    def __init__(self, subject: str | Path | None, cause: str) -> None:
        self.subject = str(subject) if subject is not None else None
        self.cause = cause
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.subject}: {self.cause}" if self.subject else self.cause


class BadInputError(AssetlineError):
    """The input file cannot be processed: empty, corrupt, unsupported, too big."""


class ModelError(AssetlineError):
    """A model is missing, corrupt, or cannot be fetched."""


class RecipeError(AssetlineError):
    """The recipe (file, --set, or payload) is invalid; raised before any work starts."""


class DeviceError(AssetlineError):
    """A requested device (cuda, vulkan) is not available."""


class OutputError(AssetlineError):
    """An output could not be written (permissions, disk full)."""
