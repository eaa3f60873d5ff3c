"""Retries for transient failures only, machine-wide slots for heavy steps, and what ops see on a run.

All against the session's real Prefect server.
"""

from __future__ import annotations

import errno
from datetime import datetime, timezone
import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from prefect import flow, task

from assetline.recipes import load_recipe
from assetline.errors import BadInputError, OutputError
from assetline.orchestration import configured, is_transient
from helpers import REPO, wait_until

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"


def test_only_transient_failures_count_as_transient():
    assert is_transient(OSError(errno.EIO, "I/O error"))
    assert is_transient(OSError(errno.ESTALE, "Stale file handle"))  # an NFS share remounted
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    assert is_transient(httpx.ConnectError("refused"))
    assert not is_transient(BadInputError("x.png", "truncated"))
    assert not is_transient(OutputError("out", "no space left on the output device"))
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone"))
    assert not is_transient(ValueError("bug"))


calls: dict[str, int] = {}


@task(name="flaky_read")
def flaky_read(key: str, failures: int, error: str) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise OSError(errno.EIO, "Input/output error") if error == "io" else BadInputError(key, "is truncated")
    return "ok"


@flow
def retrying_flow(key: str, failures: int, error: str, recipe: dict) -> str:
    step = configured(load_recipe(None, [f"{k}={v}" for k, v in recipe.items()]), flaky_read)
    return step(key, failures, error)


def test_a_transient_failure_is_retried_and_bad_input_is_not(prefect_api):
    fast = {"run.retries.delay_seconds": 0, "run.retries.attempts": 2}
    assert retrying_flow("share-hiccup", 2, "io", fast) == "ok"
    assert calls["share-hiccup"] == 3  # two failures, two retries
    state = retrying_flow("bad-file", 1, "bad", fast, return_state=True)
    assert state.is_failed() and calls["bad-file"] == 1  # never retried
    state = retrying_flow("share-down", 5, "io", fast, return_state=True)
    assert state.is_failed() and calls["share-down"] == 3  # gives up after the configured attempts
    state = retrying_flow("no-retries", 1, "io", {"run.retries.attempts": 0}, return_state=True)
    assert state.is_failed() and calls["no-retries"] == 1


spans: list[tuple[float, float]] = []


@task(name="transcribe")  # named as the heavy step, so `configured` gives it this host's slot
def heavy(seconds: float) -> None:
    start = time.monotonic()
    time.sleep(seconds)
    spans.append((start, time.monotonic()))


@flow
def heavy_flow(seconds: float) -> None:
    configured(load_recipe(None), heavy)(seconds)


def test_heavy_steps_take_a_machine_slot_one_at_a_time(prefect_api, tmp_path, monkeypatch):
    from assetline import slots

    monkeypatch.setenv("ASSETLINE_SLOTS_DIR", str(tmp_path / "slots"))
    began = datetime.now(timezone.utc)
    spans.clear()
    threads = [threading.Thread(target=heavy_flow, args=(1.5,)) for _ in range(3)]
    for t in threads:
        t.start()
    seen = []
    while any(t.is_alive() for t in threads):
        seen += [h for h in slots.holders("transcribe") if h not in seen]
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=300)
    assert len(spans) == 3
    ordered = sorted(spans)
    assert all(a_end <= b_start + 0.05 for (_, a_end), (b_start, _) in zip(ordered, ordered[1:])), ordered  # never overlapped
    assert seen and all(h.step == "transcribe" and h.slot == 0 and h.pid == os.getpid() and h.flow_run_name for h in seen)
    assert slots.holders() == []  # all given back

    # What ops see in the UI's event feed: each take and release, naming the slot and the flow run.
    from prefect.events.clients import get_events_client  # noqa: F401  (the events worker sends them)
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)
    body = {"filter": {"event": {"prefix": ["assetline.slot."]}, "any_resource": {"id_prefix": ["assetline.slot.transcribe."]}},
            "limit": 50}  # fmt: skip

    def ours() -> list[dict]:
        found = httpx.post(f"{prefect_api}/events/filter", json=body).json()["events"]
        return [e for e in found if e["payload"].get("pid") == os.getpid() and datetime.fromisoformat(e["occurred"]) >= began]

    def counts() -> dict[str, int]:
        names = [e["event"] for e in ours()]
        return {n: names.count(n) for n in ("assetline.slot.acquired", "assetline.slot.released")}

    try:  # events are delivered in the background: wait for all six
        wait_until("three takes and three releases", lambda: min(counts().values()) >= 3, 60)
    except AssertionError:
        pytest.fail(f"slot events seen: {counts()}")
    events = ours()
    assert all(any(r["prefect.resource.role"] == "flow-run" for r in e["related"]) for e in events)


def test_an_audio_run_carries_outputs_table_transcript_summary_and_finished_progress(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from assetline.flows.asset import process_asset

    src = tmp_path / "in" / "interview take 3.wav"
    src.parent.mkdir()
    shutil.copy(SPEECH, src)
    state = process_asset(str(src), str(tmp_path / "out"), return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert run.name.startswith("interview take 3.wav · ") and "audio" in run.tags
    by_type: dict[str, list] = {}
    for a in artifacts:
        by_type.setdefault(a.type, []).append(a)
    table = json.loads(by_type["table"][0].data)
    assert {row["file"] for row in table} == {"transcript.json", "subtitles.srt", "subtitles.vtt", "subtitles.ttml"}
    markdown = by_type["markdown"][0].data
    assert "interview take 3.wav: done" in markdown and "**Transcript**" in markdown
    assert "- language: en (detected, p " in markdown  # the language heard, and how sure
    assert "conclusion" in markdown.lower() or len(markdown.split("> ", 1)[1]) > 20  # the spoken words, excerpted
    progress = by_type["progress"]
    assert any(p.description.startswith("transcribe") and float(p.data) == 100.0 for p in progress)


def test_a_failed_asset_gets_a_failure_artifact_with_its_reason(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from assetline.flows.asset import process_asset

    bad = tmp_path / "cut.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    state = process_asset(str(bad), str(tmp_path / "out"), return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    markdown = next(a.data for a in artifacts if a.type == "markdown")
    assert "cut.mp4: failed" in markdown and "reason:" in markdown
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()) or all(
        p.name.startswith(".") for p in (tmp_path / "out").iterdir()
    )
