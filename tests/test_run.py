"""`assetline run` end to end: real photos, real models, a real Prefect server; then `assetline verify`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from assetline.provenance import IPTC, SCHEMA
from helpers import processes_with_env, run_cli, tree_state

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it


@pytest.fixture(scope="module")
def first_run(prefect_api, tmp_path_factory):
    """One real run over two photos; the tests below read what it made."""
    from helpers import photo

    root = tmp_path_factory.mktemp("run")
    inputs = root / "in"
    inputs.mkdir()
    photo("chelsea", (192, 128)).save(inputs / "chelsea.jpg", quality=92)
    photo("astronaut", (160, 160)).save(inputs / "astronaut.png")
    before = tree_state(inputs)
    result = run_cli("run", str(inputs), "--out", str(root / "out"), api_url=prefect_api, env={"COLUMNS": "200"})
    return root, inputs, root / "out", before, result


def asset_dir(out: Path, stem: str) -> Path:
    (found,) = [p for p in out.iterdir() if p.name.startswith(stem + "-")]
    return found


def test_run_exits_0_and_prints_a_table_of_outputs(first_run):
    _, _, out, _, result = first_run
    assert result.returncode == 0, result.stderr
    assert "2 done, 0 up to date, 0 failed" in result.stdout
    assert "cutout.png" in result.stdout and "upscaled.png" in result.stdout


def test_output_layout_is_stem_dash_sha8_with_a_sidecar_beside_every_output(first_run):
    root, inputs, out, _, _ = first_run
    from assetline.storage import sha256_file

    sha = sha256_file(inputs / "chelsea.jpg")
    folder = out / f"chelsea-{sha[:8]}"
    assert sorted(p.name for p in folder.iterdir()) == [
        "cutout.png", "cutout.png.provenance.json", "upscaled.png", "upscaled.png.provenance.json",
    ]  # fmt: skip
    assert Image.open(folder / "cutout.png").size == (192, 128)
    assert Image.open(folder / "upscaled.png").size == (384, 256)
    assert not (out / ".assetline-staging").exists()


def test_manifest_records_input_steps_models_run_and_ai_disclosure(first_run, prefect_api):
    _, inputs, out, _, _ = first_run
    from assetline.storage import sha256_file

    folder = asset_dir(out, "astronaut")
    m = json.loads((folder / "upscaled.png.provenance.json").read_text())
    assert m["schema"] == SCHEMA
    assert m["output"] == {
        "path": "upscaled.png",
        "sha256": sha256_file(folder / "upscaled.png"),
        "bytes": (folder / "upscaled.png").stat().st_size,
        "media_type": "image/png",
    }
    source = m["inputs"][0]
    assert source["role"] == "source" and source["sha256"] == sha256_file(inputs / "astronaut.png")
    assert m["inputs"][1] == {
        "path": "cutout.png", "sha256": sha256_file(folder / "cutout.png"), "role": "intermediate",
        "bytes": (folder / "cutout.png").stat().st_size,
    }  # fmt: skip
    assert [s["name"] for s in m["steps"]] == ["remove_background", "upscale"]
    rb, up = m["steps"]
    assert rb["tool"]["name"] == "rembg" and rb["model"]["name"] == "u2netp"
    assert up["model"]["name"] == "realesr-animevideov3" and up["parameters"]["scale"] == 2
    for step in m["steps"]:
        assert step["started_at"].endswith("Z") and step["started_at"] <= step["ended_at"]
        assert len(step["model"]["sha256"]) == 64
    assert m["ai_disclosure"]["digital_source_type"] == IPTC + "compositeWithTrainedAlgorithmicMedia"
    assert m["ai_disclosure"]["ai_generated_content"] is True
    assert m["run"]["flow_name"] == "process-asset"
    assert m["run"]["flow_run_name"].startswith("astronaut.png · ")
    assert m["generator"]["name"] == "assetline"
    assert len(m["recipe_sha256"]) == 64

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(m["run"]["flow_run_id"])
    assert flow_run.state.is_completed()
    assert flow_run.name == m["run"]["flow_run_name"]
    assert "image" in flow_run.tags


def test_inputs_are_never_modified(first_run):
    _, inputs, _, before, _ = first_run
    assert tree_state(inputs) == before


def test_verify_passes_on_untouched_outputs(first_run):
    _, _, out, _, _ = first_run
    result = run_cli("verify", str(out), api_url=None)
    assert result.returncode == 0, result.stdout
    assert "4 of 4 outputs verified" in result.stdout


def test_rerun_does_no_work_and_touches_nothing(first_run, prefect_api):
    root, inputs, out, _, _ = first_run
    before = tree_state(out)
    again = run_cli("run", str(inputs), "--out", str(out), api_url=prefect_api)
    assert again.returncode == 0, again.stderr
    assert "0 done, 2 up to date, 0 failed" in again.stdout
    assert tree_state(out) == before  # same bytes, same mtimes


def test_changing_a_recipe_value_reprocesses(first_run, prefect_api, tmp_path):
    root, inputs, out, _, _ = first_run
    target = tmp_path / "out"
    shutil.copytree(out, target)
    changed = run_cli("run", str(inputs), "--out", str(target), "--set", "image.upscale.method=lanczos", api_url=prefect_api)
    assert changed.returncode == 0, changed.stderr
    assert "2 done, 0 up to date" in changed.stdout
    m = json.loads((asset_dir(target, "chelsea") / "upscaled.png.provenance.json").read_text())
    assert m["steps"][1]["tool"]["name"] == "pillow"
    assert run_cli("verify", str(target), api_url=None).returncode == 0


def test_verify_catches_a_flipped_byte(first_run, tmp_path):
    _, _, out, _, _ = first_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    target = asset_dir(copy, "chelsea") / "upscaled.png"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    result = run_cli("verify", str(copy), api_url=None)
    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failures) == 1
    assert "upscaled.png" in failures[0] and "sha256 differs" in failures[0]


def test_verify_catches_a_missing_sidecar(first_run, tmp_path):
    _, _, out, _, _ = first_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (asset_dir(copy, "astronaut") / "cutout.png.provenance.json").unlink()
    result = run_cli("verify", str(copy), api_url=None)
    assert result.returncode == 1
    assert "cutout.png: no provenance sidecar" in result.stdout


def test_verify_catches_an_edited_sidecar_and_a_changed_intermediate(first_run, tmp_path):
    _, _, out, _, _ = first_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    folder = asset_dir(copy, "chelsea")
    sidecar = folder / "cutout.png.provenance.json"
    m = json.loads(sidecar.read_text())
    m["output"]["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(m))
    result = run_cli("verify", str(folder), api_url=None)
    assert result.returncode == 1
    assert "cutout.png: content does not match the manifest" in result.stdout
    # upscaled.png's manifest pins the cutout it was made from; that still holds.
    assert "upscaled.png: " not in result.stdout.replace("ok     ", "")


def test_verify_of_nothing_is_a_usage_error(tmp_path):
    result = run_cli("verify", str(tmp_path), api_url=None)
    assert result.returncode == 2


def test_run_works_without_a_configured_server_and_leaves_no_process_behind(tmp_path):
    """No PREFECT_API_URL: one temporary local server carries the run and stops with it."""
    from helpers import photo

    src = tmp_path / "in"
    src.mkdir()
    for name in ("coffee", "rocket", "chelsea"):
        photo(name, (90, 60)).save(src / f"{name}.png")
    home = tmp_path / "prefect-home"
    result = run_cli(
        "run", str(src), "--out", str(tmp_path / "out"), "--set", "image.upscale.method=lanczos",
        api_url=None, env={"PREFECT_HOME": str(home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 done" in result.stdout
    m = json.loads(next((tmp_path / "out").glob("coffee-*/cutout.png.provenance.json")).read_text())
    assert m["run"]["flow_run_id"]
    # Three assets, two at a time: still exactly one temporary server, and it is gone now.
    assert processes_with_env("PREFECT_HOME", str(home)) == []
    # The server starts before the plan is known; a rerun with nothing to do stops it unused, at once.
    again = run_cli(
        "run", str(src), "--out", str(tmp_path / "out"), "--set", "image.upscale.method=lanczos",
        api_url=None, env={"PREFECT_HOME": str(home)},
    )  # fmt: skip
    assert again.returncode == 0 and "3 up to date" in again.stdout, again.stderr
    assert processes_with_env("PREFECT_HOME", str(home)) == []


def test_runs_against_the_commands_own_server_send_no_heartbeats_and_others_keep_them(monkeypatch):
    """Heartbeats are for a server that outlives the run's process; `assetline run`'s own dies with it."""
    import threading

    from prefect.settings import get_current_settings

    from assetline.server import _use_api

    def in_an_asset_thread() -> tuple:  # what a batch's flow run sees: its threads start with no settings context
        seen = []
        thread = threading.Thread(target=lambda: seen.append((get_current_settings().flows.heartbeat_frequency,
                                                             str(get_current_settings().api.url))))  # fmt: skip
        thread.start()
        thread.join()
        return seen[0]

    monkeypatch.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
    previous = os.environ.get("PREFECT_API_URL")
    try:
        _use_api("http://127.0.0.1:9/api", heartbeats=False)
        assert in_an_asset_thread() == (None, "http://127.0.0.1:9/api")
        _use_api("http://127.0.0.1:9/api")
        assert in_an_asset_thread() == (180, "http://127.0.0.1:9/api")  # Prefect's default again
    finally:
        _use_api(previous)
