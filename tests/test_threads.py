"""One thread policy for onnxruntime, ncnn and CTranslate2: each asset in flight gets its share of the cores.

The counts are read back from the libraries' own objects where they expose
them (ncnn `net.opt`, onnxruntime's session options); CTranslate2 does not, so
for Whisper the count is the one the loader keyed the loaded model by.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from assetline import models
from assetline.config import TranscribeOptions
from assetline.tasks.remove_background import rembg_session
from assetline.tasks.transcribe import transcribe, whisper_model
from assetline.tasks.upscale import ncnn_net

CORES = len(os.sched_getaffinity(0))


@pytest.fixture
def in_flight():
    """`set_parallel_assets` for one test; the models it loads are forgotten after it (earlier ones are kept)."""
    before = set(models.sessions.items)
    yield models.set_parallel_assets
    models.set_parallel_assets(None)
    for key in set(models.sessions.items) - before:
        models.sessions.items.pop(key)


def loaded(parallel: int) -> dict[str, tuple[object, int]]:
    """Each library's loaded model for `parallel` assets in flight, with the thread count it was given."""
    models.set_parallel_assets(parallel)
    net = ncnn_net("realesr-animevideov3", 2, "cpu")[0]
    session = rembg_session("u2netp", "cpu")
    whisper = whisper_model("whisper-tiny.en", "cpu", "int8", 0)
    whisper_key = next(k for k, v in models.sessions.items.items() if v is whisper)
    return {
        "ncnn": (net, net.opt.num_threads),
        "onnxruntime": (session, session.inner_session.get_session_options().intra_op_num_threads),
        "ctranslate2": (whisper, whisper_key[-1]),
    }


def test_threads_per_asset_splits_the_usable_cores_between_the_assets_in_flight(in_flight):
    for parallel in (1, 2, 3, CORES * 2):
        in_flight(parallel)
        assert models.threads_per_asset() == max(1, CORES // parallel)


@pytest.mark.parametrize("parallel", [1, 2])
def test_each_library_is_given_its_share_of_the_cores(in_flight, parallel):
    expected = max(1, CORES // parallel)
    assert {lib: threads for lib, (_, threads) in loaded(parallel).items()} == dict.fromkeys(
        ("ncnn", "onnxruntime", "ctranslate2"), expected
    )


def test_a_model_loaded_for_one_share_is_never_reused_for_another(in_flight):
    if CORES < 2:
        pytest.skip("one core: every share is one thread")
    alone, shared = loaded(1), loaded(2)
    for lib in alone:
        assert alone[lib][0] is not shared[lib][0], lib
        assert alone[lib][1] == CORES and shared[lib][1] == CORES // 2
    again = loaded(1)
    assert all(again[lib][0] is alone[lib][0] for lib in alone)  # still loaded once per share


def test_the_transcript_records_the_threads_whisper_was_given(in_flight, tmp_path):
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(np.zeros(16_000, dtype="<i2").tobytes())
    in_flight(2)
    record = transcribe.fn(silence, tmp_path)
    assert record.parameters["cpu_threads_used"] == max(1, CORES // 2)
    # A recipe's own count wins over the policy, and is what is recorded.
    record = transcribe.fn(silence, tmp_path, TranscribeOptions(cpu_threads=3))
    assert record.parameters["cpu_threads_used"] == 3


def test_a_process_serve_starts_reads_the_assets_in_flight_from_its_environment():
    # `serve` sets ASSETLINE_PARALLEL_ASSETS for the flow-run processes it starts.
    code = "from assetline import models; print(models.threads_per_asset())"
    for parallel in ("1", "2"):
        env = {**os.environ, "ASSETLINE_PARALLEL_ASSETS": parallel}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout) == max(1, CORES // int(parallel))


def test_the_environment_is_read_at_each_call_until_a_batch_sets_the_count(in_flight, monkeypatch):
    in_flight(None)
    monkeypatch.setenv("ASSETLINE_PARALLEL_ASSETS", "2")
    assert models.threads_per_asset() == max(1, CORES // 2)
    monkeypatch.delenv("ASSETLINE_PARALLEL_ASSETS")
    assert models.threads_per_asset() == CORES
    in_flight(2)  # what `run_batch` does: it knows how many of its assets run at once
    monkeypatch.setenv("ASSETLINE_PARALLEL_ASSETS", "1")
    assert models.threads_per_asset() == max(1, CORES // 2)


@pytest.mark.parametrize("parallel", [1, 2])
def test_warm_up_loads_what_the_steps_then_use_and_they_load_nothing_more(in_flight, parallel, tmp_path):
    """`assetline run` loads the models while its server starts: the steps must find exactly those, not load their own."""
    from PIL import Image

    from assetline.config import Recipe
    from assetline.tasks import remove_background, upscale
    from assetline.tasks.warm import warm_up

    recipe = Recipe()
    in_flight(parallel)
    for key in [k for k in models.sessions.items if k[0] in ("rembg", "ncnn")]:  # cold, whatever ran before
        models.sessions.items.pop(key)
    loaded_names = warm_up(recipe, ["image"])
    assert loaded_names == [recipe.image.remove_background.model, recipe.image.upscale.model]
    warmed = {k: v for k, v in models.sessions.items.items() if k[0] in ("rembg", "ncnn")}
    assert len(warmed) == 2 and all(k[-1] == max(1, CORES // parallel) for k in warmed)

    still = tmp_path / "still.png"
    Image.new("RGB", (48, 32), (200, 80, 40)).save(still)
    cut = remove_background.fn(still, tmp_path, recipe.image)
    upscale.fn(tmp_path / cut.output, tmp_path, recipe.image)
    after = {k: v for k, v in models.sessions.items.items() if k[0] in ("rembg", "ncnn")}
    assert after.keys() == warmed.keys() and all(after[k] is warmed[k] for k in warmed)  # the very objects


def test_warm_up_skips_steps_the_recipe_turns_off_and_kinds_with_nothing_to_load(in_flight):
    from assetline.config import Recipe
    from assetline.tasks.warm import warm_up

    recipe = Recipe.model_validate({"image": {"upscale": {"method": "lanczos"}, "remove_background": {"enabled": False}}})
    in_flight(1)
    assert warm_up(recipe, ["image"]) == []
    assert warm_up(recipe, []) == []
