"""Recipes: the documented default file is the built-in default; bad recipes fail before work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from assetline.config import Recipe
from assetline.recipes import load_recipe
from assetline.errors import RecipeError
from helpers import REPO, run_cli


def test_configs_default_yaml_is_exactly_the_built_in_default():
    assert load_recipe(REPO / "configs" / "default.yaml") == Recipe()


def test_set_overrides_one_value_keeping_its_type():
    recipe = load_recipe(None, ["image.upscale.scale=4", "image.remove_background.background=#FFAA00"])
    assert recipe.image.upscale.scale == 4
    assert recipe.image.remove_background.background == "#ffaa00"


@pytest.mark.parametrize(
    "setting, message",
    [
        ("image.upscale.sclae=4", "image.upscale.sclae: unknown key"),
        ("image.upscale.scale=5", "image.upscale.scale"),
        ("image.upscale.model=esrgan-xxl", "unknown model 'esrgan-xxl'"),
        ("image.remove_background.model=realesrgan-x4plus", "unknown model"),
        ("image.remove_background.background=red", "must be a colour like '#ffffff'"),
        ("image.device=tpu", "image.device"),
        ("run.concurrency=0", "run.concurrency"),
    ],
)
def test_bad_values_are_clear_errors(setting, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace("'", "'")):
        load_recipe(None, [setting])


def test_recipe_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("image:\n  upscale: [1, 2\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(bad)
    assert str(bad) in str(exc.value) and "not valid YAML" in str(exc.value)


def test_image_recipe_hash_ignores_run_settings_and_follows_image_settings():
    base = Recipe()
    assert load_recipe(None, ["run.concurrency=7"]).section_sha256("image") == base.section_sha256("image")
    assert load_recipe(None, ["image.upscale.scale=4"]).section_sha256("image") != base.section_sha256("image")


def test_cli_rejects_a_bad_recipe_with_exit_2_before_any_work(tmp_path: Path):
    photo = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(photo)
    result = run_cli("run", str(photo), "--out", str(tmp_path / "out"), "--set", "image.upscale.scale=9", api_url=None)
    assert result.returncode == 2
    assert "image.upscale.scale" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_recipe_yaml_round_trips_through_model_dump(tmp_path: Path):
    custom = tmp_path / "r.yaml"
    custom.write_text(yaml.safe_dump({"image": {"upscale": {"method": "lanczos", "scale": 3}}}))
    recipe = load_recipe(custom)
    assert recipe.image.upscale.method == "lanczos" and recipe.image.upscale.scale == 3
    assert recipe.image.remove_background == Recipe().image.remove_background
