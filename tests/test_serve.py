"""`assetline serve` end to end: a real local Prefect server started by serve itself, real watcher, real runs.

One serve process for the module (about 20 s to start). Files are dropped
into its inbox the way users and transfer tools do (a copy under a partial
name, then a rename); the tests read what happened through the server's API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from helpers import REPO, Serve, free_port, photo, wait_until
from helpers.serve import _wait

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

STARTUP_S = 180  # bounds for hangs, not performance limits
SETTLE_S = 300


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    serve = Serve(tmp_path_factory.mktemp("serve"))
    yield serve
    if serve.proc.poll() is None:
        serve.stop()


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> list[Path]:
    """Ten small real stills, each different content (crops of four photos at varied sizes)."""
    folder = tmp_path_factory.mktemp("stills")
    made = []
    for i in range(10):
        name = ("chelsea", "astronaut", "coffee", "rocket")[i % 4]
        img = photo(name, (96 + 8 * i, 72 + 4 * i))
        path = folder / f"{name}-{i:02d}.jpg"
        img.save(path, quality=90)
        made.append(path)
    return made


def test_a_dropped_file_becomes_a_named_completed_run_with_outputs_and_artifacts(served, stills):
    dropped = served.drop(stills[0], "first.jpg")
    run = served.wait_finished("first.jpg")
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["name"].startswith("first.jpg · ")
    assert "image" in run["tags"] and any(t.startswith("recipe:") for t in run["tags"])
    folders = list(served.out.glob("first-*"))
    assert len(folders) == 1
    names = sorted(p.name for p in folders[0].iterdir())
    assert {"cutout.png", "upscaled.png", "cutout.png.provenance.json", "upscaled.png.provenance.json"} <= set(names)
    manifest = json.loads((folders[0] / "upscaled.png.provenance.json").read_text())
    assert manifest["run"]["flow_run_id"] == run["id"]
    assert manifest["run"]["deployment"] == "process-asset"
    assert manifest["inputs"][0]["path"] == str(dropped)

    artifacts = {a["type"]: a for a in served.artifacts(run["id"])}
    table = json.loads(artifacts["table"]["data"])
    assert [row["file"] for row in table] == ["cutout.png", "upscaled.png"]
    assert all(len(row["sha256"]) == 64 and row["bytes"] > 0 and "s" in row["steps"] for row in table)
    markdown = artifacts["markdown"]["data"]
    assert "first.jpg: done" in markdown and "AI disclosure" in markdown
    assert markdown.count("data:image/jpeg;base64,") == 2  # before and after thumbnails

    task_runs = served.client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    assert sorted(t["task_key"].split("-")[0] for t in task_runs) == ["remove_background", "upscale"]
    assert subprocess.run(
        [sys.executable, "-m", "assetline.cli", "verify", str(folders[0])], capture_output=True, text=True
    ).returncode == 0


def test_both_deployments_exist_and_the_batch_has_its_nightly_schedule(served):
    deployments = {d["name"]: d for d in served.client.post("/deployments/filter", json={}).json()}
    assert {"process-asset", "batch-inbox"} <= set(deployments)
    schedules = deployments["batch-inbox"]["schedules"]
    assert [s["schedule"]["cron"] for s in schedules] == ["0 2 * * *"]
    assert schedules[0]["schedule"]["timezone"] == "UTC"
    assert deployments["process-asset"]["parameters"]["inbox"] == str(served.inbox)
    automations = served.client.post("/automations/filter", json={}).json()
    assert any("assetline.asset.arrived" in json.dumps(a["trigger"]) for a in automations)
    # The catch-up batch ran once at start.
    assert any(r["state_type"] == "COMPLETED" for r in served.flow_runs("batch-inbox"))


def test_a_burst_of_ten_is_processed_once_each_and_a_broken_file_fails_alone(served, stills, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    duplicate = stills[1]
    before = {r["id"] for r in served.flow_runs()}
    for path in stills[1:]:
        served.drop(path)
    served.drop(broken)
    served.drop(duplicate, "same-content-again.jpg")  # arrives twice: processed once
    expected = {p.name for p in stills[1:]} | {"broken.png"}

    def all_done():
        new = [r for r in served.finished() if r["id"] not in before]
        names = {Path(r["parameters"]["path"]).name for r in new}
        return new if expected <= names else None

    new = _wait("ten runs to finish", all_done)
    time.sleep(3)  # a duplicate run, if there were one, would have been created by now
    new = [r for r in served.flow_runs() if r["id"] not in before]
    by_name: dict[str, list[dict]] = {}
    for r in new:
        by_name.setdefault(Path(r["parameters"]["path"]).name, []).append(r)
    assert set(by_name) == expected, sorted(by_name)  # the duplicate never became a run
    assert all(len(runs) == 1 for runs in by_name.values()), {k: len(v) for k, v in by_name.items()}
    failed = by_name["broken.png"][0]
    assert failed["state_type"] == "FAILED", failed["state"]
    assert "broken.png: cannot read file" in failed["state"]["message"]
    reason = next(a for a in served.artifacts(failed["id"]) if a["type"] == "markdown")
    assert "failed" in reason["data"] and "cannot read file" in reason["data"]
    assert all(runs[0]["state_type"] == "COMPLETED" for name, runs in by_name.items() if name != "broken.png")
    for path in stills[1:]:
        assert len(list(served.out.glob(f"{path.stem}-*"))) == 1
    assert not list(served.out.glob("same-content-again-*"))
    assert not list(served.out.glob("broken-*"))


def test_another_system_triggers_a_run_by_posting_the_event(served, stills):
    # A name the watcher ignores (a .part file), so only the posted event can start its run.
    target = served.inbox / "delivered-by-api.part"
    shutil.copyfile(stills[0], target)
    assert served.post_event({"path": target.name}) == 204
    run = served.wait_finished(target.name)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert list(served.out.glob("delivered-by-api-*"))


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.jpg", "sub/../../etc/hosts"])
def test_an_event_naming_a_path_outside_the_inbox_is_refused(served, path):
    assert served.post_event({"path": path}) == 204
    run = _wait(f"the refused run for {path}", lambda: next(
        (r for r in served.finished() if r["parameters"].get("path") == path), None))  # fmt: skip
    assert run["state_type"] == "FAILED"
    assert "outside the inbox" in run["state"]["message"] and "refused" in run["state"]["message"]
    assert "unidentified" in run["tags"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browse(url: str, screenshot: Path) -> str:
    """Render `url` in headless Chromium (the UI is a single-page app): save a screenshot, return the DOM."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1200",
            "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw"]  # fmt: skip
    shot = subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=180)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium (make test installs Debian's chromium as root)")
def test_the_prefect_ui_shows_the_run_and_its_artifacts_in_a_real_browser(served):
    shots = REPO / "test-output" / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    run = served.wait_finished("first.jpg")
    ui = served.api.removesuffix("/api")
    dom = _browse(f"{ui}/runs/flow-run/{run['id']}", shots / "flow-run.png")
    assert run["name"] in dom  # the run, by its asset name
    assert "remove_background" in dom and "upscale" in dom  # its task runs, by step
    markdown = next(a for a in served.artifacts(run["id"]) if a["type"] == "markdown")
    dom = _browse(f"{ui}/artifacts/artifact/{markdown['id']}", shots / "artifact.png")
    assert "first.jpg: done" in dom and "AI disclosure" in dom
    assert dom.count('src="data:image/jpeg;base64,') == 2  # before/after thumbnails rendered as images
    table = next(a for a in served.artifacts(run["id"]) if a["type"] == "table")
    dom = _browse(f"{ui}/artifacts/artifact/{table['id']}", shots / "outputs-table.png")
    assert "upscaled.png" in dom and "cutout.png" in dom


def test_sigterm_stops_watcher_runner_and_server_leaving_no_process(served):
    pgid = served.proc.pid
    assert served.stop(signal.SIGTERM) == 0
    assert "stopped" in served.log.read_text()
    _wait("the process group to be gone", lambda: not _group_alive(pgid), 60)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", served.port))  # the local server let go of its port
