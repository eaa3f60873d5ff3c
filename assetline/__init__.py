"""assetline: an event-driven asset production pipeline on Prefect 3.

Stills, footage and audio in; cutouts, upscales, transcripts and subtitles out,
each with a provenance manifest saying exactly how it was made.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("assetline")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from assetline.errors import (  # noqa: E402
    AssetlineError,
    BadInputError,
    DeviceError,
    ModelError,
    OutputError,
    RecipeError,
)

__all__ = [
    "__version__",
    "AssetlineError",
    "BadInputError",
    "DeviceError",
    "ModelError",
    "OutputError",
    "RecipeError",
]
