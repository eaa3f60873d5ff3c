"""The image flow: a still arrives; its subject is cut out, then upscaled.

Trigger: `assetline run`, the inbox watcher, or the Prefect UI, with the
path of one still. Produces, under `OUT/<stem>-<sha8>/`:
  cutout.png    RGBA, the input's size (rembg)
  upscaled.png  the cutout, scaled (Real-ESRGAN or Lanczos)
and next to each its `.provenance.json`. Everything is staged first and
published only when the whole asset succeeded.

Run on its own: `python -m assetline.flows.image PHOTO [OUT]` (a process-asset run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from assetline import tasks
from assetline.assets import Asset
from assetline.config import Recipe
from assetline.flows._asset import AssetResult, Made, intermediate_ref, produce, source_ref
from assetline.media import check_pixel_limit
from assetline.orchestration import configured
from assetline.provenance import StepRecord
from assetline.tasks.remove_background import OUTPUT_NAME as CUTOUT
from assetline.tasks.upscale import OUTPUT_NAME as UPSCALED


def image_outputs(recipe: Recipe, asset: Asset | None = None) -> list[str]:
    """The files an image run makes under this recipe, in the order they are made."""
    steps = recipe.image
    return [name for name, on in ((CUTOUT, steps.remove_background.enabled), (UPSCALED, steps.upscale.enabled)) if on]


def run_image_steps(asset: Asset, out_root: Path, recipe: Recipe) -> AssetResult:
    image = recipe.image
    remove_background, upscale = configured(recipe, tasks.remove_background, tasks.upscale)
    with Image.open(asset.reads) as probe:  # refuse a bomb before any task starts
        check_pixel_limit(asset.path, probe.size, image.max_pixels)

    def make(stage: Path) -> list[Made]:
        made: list[Made] = []
        steps: list[StepRecord] = []
        current, inputs = asset.reads, [source_ref(asset)]
        if image.remove_background.enabled:
            step = remove_background(asset.reads, stage, image)
            steps.append(step)
            made.append(Made(stage / step.output, list(inputs), list(steps)))
            current = stage / step.output
            inputs = [source_ref(asset), intermediate_ref(current)]
        if image.upscale.enabled:
            step = upscale(current, stage, image)
            steps.append(step)
            made.append(Made(stage / step.output, list(inputs), list(steps)))
        return made

    return produce(asset, out_root, recipe, image_outputs(recipe), {CUTOUT, UPSCALED}, make)


if __name__ == "__main__":
    from assetline.flows.asset import process_asset

    print(process_asset(str(Path(sys.argv[1]).absolute()), sys.argv[2] if len(sys.argv) > 2 else "out"))
