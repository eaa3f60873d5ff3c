"""Every `ASSETLINE_*` environment variable in one place (pydantic-settings, which comes with Prefect).

Read at the moment of use (`settings()` builds a fresh object, about a
millisecond: fine once per step, not per frame), so a variable set by a test, by `serve` for its flow-run
processes, or by a user between two calls is always honoured. Recipes say what
to make; these say where things are on this machine and which keys sign.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from assetline.errors import AssetlineError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSETLINE_", extra="ignore", env_ignore_empty=True)

    recipe: Path | None = Field(None, description="the recipe file used when none is given (else the built-in defaults)")
    models: Path | None = Field(None, description="the model cache (default: the user cache folder)/models")
    user_models: Path | None = Field(None, description="the user's model list (default: beside the config, user-models.yaml)")
    model_sources: str = Field("", description="extra model sources, os.pathsep-separated folders or wheels, tried first")
    parallel_assets: int = Field(1, description="assets in flight in this process: the cores are split between them (below 1: 1)")
    keys: Path | None = Field(None, description="the keys folder (default: the user data folder)/keys")
    signing_cert: str | None = Field(None, description="PEM certificate chain that signs outputs (a path or the PEM itself)")
    signing_key: str | None = Field(None, description="its private key (a path or the PEM itself)")
    trust_anchors: str | None = Field(None, description="PEM file of the CAs `verify` trusts")
    tsa_url: str | None = Field(None, description="an RFC 3161 time-stamp authority for signatures")
    asset_lock: Literal["auto", "server", "file"] = Field(
        "auto", description="the per-asset lock across machines: the server's slot in work-pool runs (auto), always (server), never (file)")
    asset_lease_seconds: float = Field(60, ge=60, description="the lease on that slot: how soon a lost holder's slot is freed (the server's least: 60)")
    slots_dir: Path | None = Field(None, description="this machine's heavy-step slot files (local disk, never a share)")
    inbox: Path | None = Field(None, description="the inbox deployments and `watch` use (configs/prefect.yaml)")
    out: Path | None = Field(None, description="the output root deployments use (configs/prefect.yaml)")


def settings() -> Settings:
    """The settings as the environment says now; a bad value is one line naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ASSETLINE_" + str(first["loc"][0]).upper() if first["loc"] else "ASSETLINE_*"
        raise AssetlineError(name, f"{first['msg']} (got {first.get('input')!r})") from None
