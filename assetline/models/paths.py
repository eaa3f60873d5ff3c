"""Where models live on this machine: the verified cache and the user's model list.

Both are read from the settings at each call, so a variable set by a test, by
`serve` for its children, or between two calls is honoured.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir

from assetline.settings import settings


def cache_root() -> Path:
    """Where verified models live: `$ASSETLINE_MODELS`, else the user's cache folder."""
    folder = settings().models
    return folder.expanduser() if folder else Path(user_cache_dir("assetline")) / "models"


def user_models_file() -> Path:
    """The user's own models: `$ASSETLINE_USER_MODELS`, else `user-models.yaml` in the cache."""
    path = settings().user_models
    return path.expanduser() if path else cache_root() / "user-models.yaml"
