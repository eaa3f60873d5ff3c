"""The one entry flow: any file arrives; it is identified by content and routed to its kind's steps.

`assetline run` starts one `process-asset` run per file that needs work; the
inbox deployment does the same per event. A file that can't be identified
(empty, corrupt, not media) fails here, visibly, with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, tags

from assetline.assets import Asset, opened, renamed
from assetline.config import Recipe
from assetline.recipes import load_recipe, recipe_from_dict
from assetline.errors import AssetlineError, BadInputError
from assetline.flows._asset import AssetResult, run_name
from assetline.flows._report import failure_message, label_flow_run, report_asset, report_failure
from assetline.flows.audio import audio_outputs, run_audio_steps
from assetline.flows.footage import footage_outputs, run_footage_steps
from assetline.flows.image import image_outputs, run_image_steps
from assetline.inbox import confine
from assetline.orchestration import give_up_after_crashes


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
def process_asset(
    path: str, out: str, recipe: dict | None = None, sha256: str | None = None, inbox: str | None = None,
    fingerprint: str | None = None,
) -> AssetResult:  # fmt: skip
    """Identify one file by its content and run its kind's steps into `out`.

    `inbox` is the folder the file must stay inside: the inbox deployment's
    (where `path` may be relative to it), or the folder `assetline run` found
    it in. Anything else is refused before it is opened, and what is opened is
    confined by its descriptor, then hashed and decoded from that descriptor
    alone (a symlink swapped in meanwhile is refused, not followed).
    `sha256` is what the announcer saw; the file is hashed again here, and
    the outputs are named by what is actually there, unless `fingerprint`
    (from the same run's plan) shows it is the very file, unchanged.

    An asset the recipe's review policy holds waits in `OUT/.review/<asset>/`:
    served, the run suspends for the reviewer's decision (the UI's Resume form).

    A run that crashed (its process killed) is put back by the crash-retry
    automation (`orchestration.ensure_crash_retries`); past `run.crash_retries`
    attempts it ends Failed here, with the reason.
    """
    logger = get_run_logger()
    source = Path(path)
    asset = None
    try:
        settings = recipe_from_dict(recipe) if recipe is not None else load_recipe(None)  # $ASSETLINE_RECIPE, or defaults
        give_up_after_crashes(settings.run.crash_retries)
        if inbox:
            source = confine(path, inbox)
        known = (sha256, fingerprint) if sha256 and fingerprint else None
        with opened(source, Path(inbox) if inbox else None, known) as asset:
            if sha256 and sha256 != asset.sha256:
                logger.warning("%s changed since it was announced (sha256 %s, now %s)", source, sha256[:12], asset.sha256[:12])
            run_tags = [asset.kind] + ([f"recipe:{settings.section_sha256(asset.kind)[:8]}"] if asset.kind in ROUTES else [])
            label_flow_run(run_tags, f"{source.name} · {asset.sha256[:8]}")
            with tags(*run_tags):  # its task runs carry them too
                result = route(asset).steps(asset, Path(out), settings)
            if asset.kind != "video" and settings.video.matte.enabled:
                note = f"video.matte ignored: it applies to footage, not to {asset.kind}"
                logger.info("%s: %s", source, note)
                result.message = "; ".join(m for m in (result.message, note) if m)
    except Exception as exc:
        if isinstance(exc, AssetlineError) and asset is not None:
            renamed(exc, asset.reads, asset.path)  # name the file as the user did, not by its descriptor
        if asset is None:
            label_flow_run(["unidentified"])
        message = failure_message(exc, source)
        logger.error("%s: %s", source, message)
        report_failure(source, asset.sha256 if asset else sha256, message)
        raise
    if result.status == "review":  # held for a person: suspended here when served (flows/review.py)
        from assetline.flows.review import await_review

        decided = await_review(result, asset, Path(out))
        if not isinstance(decided, AssetResult):
            return decided  # rejected: the run ends with the reviewer's words
        result = decided
    report_asset(result, source)
    return result
