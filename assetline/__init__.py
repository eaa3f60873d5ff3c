"""assetline: an event-driven asset production pipeline on Prefect 3.

Stills, footage and audio in; cutouts, upscales, transcripts and subtitles out,
each with a provenance manifest saying exactly how it was made.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ncnn's OpenMP threads busy-wait between layers by default, starving the decoder and
# encoder threads beside them (a 10-frame clip: 7 s busy-waiting, 0.23 s passive). It must
# be set before ncnn is first imported, so it is set here, unless the user chose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
