"""The one entry flow: any file arrives; it is identified by content and routed to its kind's steps.

`assetline run` starts one `process-asset` run per file that needs work; the
inbox deployment does the same per event. A file that can't be identified
(empty, corrupt, not media) fails here, visibly, with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow

from assetline.assets import Asset, identify
from assetline.config import Recipe, recipe_from_dict
from assetline.errors import BadInputError
from assetline.flows._asset import AssetResult, run_name
from assetline.flows.audio import audio_outputs, run_audio_steps
from assetline.flows.footage import footage_outputs, run_footage_steps
from assetline.flows.image import image_outputs, run_image_steps


class Route:
    """How one kind of asset is processed: its steps, and the outputs a recipe makes for it."""

    def __init__(self, steps: Callable[[Asset, Path, Recipe], AssetResult], outputs: Callable[[Recipe, Asset], list[str]]):
        self.steps = steps
        self.outputs = outputs


ROUTES: dict[str, Route] = {
    "image": Route(run_image_steps, image_outputs),
    "audio": Route(run_audio_steps, audio_outputs),
    "video": Route(run_footage_steps, footage_outputs),
}


def route(asset: Asset) -> Route:
    try:
        return ROUTES[asset.kind]
    except KeyError:
        raise BadInputError(asset.path, f"{asset.kind} files are not processed yet (no {asset.kind} flow)") from None


@flow(name="process-asset", flow_run_name=run_name, log_prints=True, persist_result=False)
def process_asset(path: str, out: str, recipe: dict | None = None, sha256: str | None = None) -> AssetResult:
    """Identify one file by its content and run its kind's steps into `out`."""
    settings = recipe_from_dict(recipe or {})
    asset = identify(Path(path))
    return route(asset).steps(asset, Path(out), settings)
