"""Crash safety: `assetline run` killed with SIGKILL mid-batch, then run again.

A mixed batch (two stills, real speech, a short clip with speech) runs in its
own process group against Prefect's temporary server, as a user's `assetline
run` does. Once at least one asset is published and another is still staging,
the whole group (CLI, ffmpeg, the temporary server) is SIGKILLed. The tree must
then hold nothing half-written and no sidecar without its output; the rerun must
finish every asset exactly once, clean the staging litter away, verify, and
leave the inputs as they were.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from assetline.provenance import SIDECAR_SUFFIX
from assetline.storage import STAGING_DIR
from helpers import REPO, make_clip, photo, processes_with_env, run_cli, tree_state

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

SPEECH = REPO / "tests" / "data" / "arctic_a0007.wav"
OUTPUTS = {
    "a-still": ["cutout.png", "upscaled.png"],
    "b-still": ["cutout.png", "upscaled.png"],
    "c-speech": ["subtitles.srt", "subtitles.ttml", "subtitles.vtt", "transcript.json"],
    "d-clip": ["subtitles.srt", "subtitles.ttml", "subtitles.vtt", "transcript.json", "video.mp4"],
}
KILL_DEADLINE = 600  # seconds: a bound for a hang, not a performance limit


def published(out: Path) -> dict[str, set[str]]:
    """Per asset folder (by stem), the outputs whose sidecar is in place."""
    done: dict[str, set[str]] = {}
    if not out.is_dir():
        return done
    for folder in out.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        stem = folder.name.rsplit("-", 1)[0]
        done[stem] = {p.name[: -len(SIDECAR_SUFFIX)] for p in folder.glob("*" + SIDECAR_SUFFIX)}
    return done


def complete_assets(out: Path) -> set[str]:
    return {stem for stem, names in published(out).items() if names >= set(OUTPUTS.get(stem, ["?"]))}


def staging_entries(out: Path) -> list[str]:
    root = out / STAGING_DIR
    try:
        return [p.name for p in root.iterdir()]
    except OSError:
        return []


def visible_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)]


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo("chelsea", (96, 64)).save(inputs / "a-still.jpg", quality=90)
    photo("coffee", (80, 80)).save(inputs / "b-still.png")
    shutil.copy(SPEECH, inputs / "c-speech.wav")
    make_clip(inputs / "d-clip.mp4", seconds=2.0)
    return inputs


def test_sigkill_mid_batch_then_rerun_processes_every_asset_exactly_once(batch: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    home = tmp_path / "prefect-home"  # a private home: any server left behind is found by it
    before = tree_state(batch)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    env.update(PREFECT_HOME=str(home), COLUMNS="200")
    cmd = [sys.executable, "-m", "assetline.cli", "run", str(batch), "--out", str(out),
           "--set", "video.encode.preset=ultrafast"]  # fmt: skip
    stopped_at: dict = {}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + KILL_DEADLINE
            while time.monotonic() < deadline and proc.poll() is None:
                done, staging = complete_assets(out), staging_entries(out)
                if done and staging and len(done) < len(OUTPUTS):
                    stopped_at = {"complete": sorted(done), "staging": staging}
                    break
                time.sleep(0.02)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI, ffmpeg, the temporary Prefect server
            except ProcessLookupError:
                pass
            proc.wait(timeout=60)
        log.seek(0)
        first_output = log.read().decode(errors="replace")
    assert stopped_at, f"the run never had one asset published and another staging:\n{first_output}"
    assert proc.returncode == -signal.SIGKILL

    # A killed group leaves no temporary Prefect server running.
    for _ in range(100):
        orphans = processes_with_env("PREFECT_HOME", str(home))
        if not orphans:
            break
        time.sleep(0.05)
    for pid in orphans:  # clean up before failing, so a stray server never outlives the test
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], f"processes left running after SIGKILL of the group: {orphans}"

    # Straight after the kill: whole files only, no sidecar without its output.
    after_kill = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in visible_files(out)}
    for path in after_kill:
        if path.name.endswith(SIDECAR_SUFFIX):
            assert path.with_name(path.name[: -len(SIDECAR_SUFFIX)]).is_file(), f"sidecar without its output: {path}"
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.load()  # a half-written PNG would not decode
    assert not [p for p in after_kill if p.name.endswith(".tmp")]
    complete_before = complete_assets(out)
    left = staging_entries(out)  # usually the in-flight asset's staging folder: the rerun must clear it

    again = run_cli("run", str(batch), "--out", str(out), "--set", "video.encode.preset=ultrafast",
                    api_url=None, env={"PREFECT_HOME": str(home), "COLUMNS": "200"})  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    redone = len(OUTPUTS) - len(complete_before)
    assert f"{redone} done, {len(complete_before)} up to date, 0 failed" in again.stdout, again.stdout

    # Every asset's outputs exist once, each with its sidecar; nothing hidden or temporary is left.
    # (Other files an output may carry, such as a signed manifest `X.c2pa`, are named after it.)
    folders = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # not the hidden lock files
    assert [f.rsplit("-", 1)[0] for f in folders] == sorted(OUTPUTS), folders
    for folder in folders:
        names = {p.name for p in (out / folder).iterdir()}
        wanted = OUTPUTS[folder.rsplit("-", 1)[0]]
        assert names >= set(wanted + [n + SIDECAR_SUFFIX for n in wanted]), (folder, sorted(names))
        assert all(any(n.startswith(w) for w in wanted) for n in names), (folder, sorted(names))
        assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], (folder, sorted(names))
    assert not (out / STAGING_DIR).exists(), f"left by the kill: {left}; after the rerun: {staging_entries(out)}"
    # What was complete before the kill was not made again.
    for path, stamp in after_kill.items():
        if path.parent.name.rsplit("-", 1)[0] in complete_before:
            assert (path.stat().st_size, path.stat().st_mtime_ns) == stamp, path

    verified = run_cli("verify", str(out), api_url=None)
    assert verified.returncode == 0, verified.stdout
    assert tree_state(batch) == before
    assert processes_with_env("PREFECT_HOME", str(home)) == []


# --------------------------------------------------------------------------- the mechanism, on its own

HOLDER = """
import sys, time
from pathlib import Path
from assetline.storage import staging_folder
with staging_folder(Path(sys.argv[1]), "held-12345678") as stage:
    (stage / "part.png").write_bytes(b"half")
    print(stage, flush=True)
    time.sleep(600)
"""


def test_only_staging_folders_nobody_holds_are_cleaned(tmp_path: Path) -> None:
    from assetline.storage import clean_stale_staging, staging_folder

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        held = Path(holder.stdout.readline().strip())  # another process, staging right now
        assert held.is_dir()
        with staging_folder(tmp_path, "mine-12345678") as mine:  # this process, in another asset
            abandoned = tmp_path / STAGING_DIR / "dead-12345678.0123456789ab"
            abandoned.mkdir()
            (abandoned / "cutout.png").write_bytes(b"half")
            assert clean_stale_staging(tmp_path) == [abandoned]
            assert mine.is_dir() and held.is_dir()
        holder.kill()  # SIGKILL: the kernel drops its lock, the folder stays behind
        holder.wait(timeout=60)
        assert held.is_dir()
        assert clean_stale_staging(tmp_path) == [held]
        assert not (tmp_path / STAGING_DIR).exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_only_temporaries_nobody_holds_are_removed(tmp_path: Path) -> None:
    import fcntl

    from assetline.storage import remove_stale_temporaries, write_atomically

    write_atomically(tmp_path / "cutout.png", b"whole")
    abandoned = tmp_path / ".cutout.png.k3j4h5.tmp"
    abandoned.write_bytes(b"half")
    held = tmp_path / ".upscaled.png.a1b2c3.tmp"
    held.write_bytes(b"being written")
    link = tmp_path / ".x.png.zzz.tmp"
    link.symlink_to(tmp_path / "cutout.png")
    folder = tmp_path / ".y.png.www.tmp"
    folder.mkdir()
    with open(held, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # as write_atomically holds its temporary
        assert remove_stale_temporaries(tmp_path) == [abandoned]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([held.name, link.name, folder.name, "cutout.png"])
    assert (tmp_path / "cutout.png").read_bytes() == b"whole"
