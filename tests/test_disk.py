"""The output side failing mid-run: the disk fills, or an asset's folder is read-only.

The output root is a small tmpfs mounted for the test (root only: skipped, with
the reason, where mounting is not permitted); one asset's folder in it is a
read-only folder. Each affected asset gets one line naming its output and the
cause, nothing half-written is left, and the other assets complete. (As root,
the CLI runs without CAP_DAC_OVERRIDE so that a read-only folder is read-only to it.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assetline.errors import BadInputError, OutputError
from assetline.ffmpeg import run_ffmpeg
from assetline.storage import STAGING_DIR, sha256_file
from helpers import can_drop_dac_capabilities, drop_dac_capabilities, make_clip, photo, run_cli

CLI_ENV = {"COLUMNS": "80", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: room for a few small outputs (and signing them), not for a large one."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount_point))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        _unmount(mount_point)


def run_cli_unprivileged(*args: str, api_url: str) -> subprocess.CompletedProcess:
    """`assetline ARGS` that file permissions apply to, even as root (no CAP_DAC_OVERRIDE)."""
    if os.geteuid() != 0:
        return run_cli(*args, api_url=api_url, env=CLI_ENV)
    if not can_drop_dac_capabilities():
        pytest.skip("root without CAP_SETPCAP: cannot make a folder unwritable to the CLI")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    env.update(CLI_ENV, PREFECT_API_URL=api_url)
    return subprocess.run(  # noqa: PLW1509 - preexec_fn only calls prctl
        [sys.executable, "-m", "assetline.cli", *args], capture_output=True, text=True, env=env, timeout=1800,
        preexec_fn=drop_dac_capabilities,
    )  # fmt: skip


def lines_naming(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line]


def test_ffmpeg_writing_to_a_full_disk_blames_the_output_not_the_input(small_disk: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", audio=None, seconds=1.0)
    target = small_disk / "too-big.mp4"
    args = ["-i", str(clip), "-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "0", str(target)]
    with pytest.raises(OutputError) as exc:
        run_ffmpeg(args, clip, bad_input=True)  # an input failure would be BadInputError
    assert not isinstance(exc.value, BadInputError)
    assert exc.value.line() == f"{target}: no space left on the output device"


@pytest.mark.slow
def test_full_disk_and_read_only_folder_fail_their_assets_clearly_and_the_rest_complete(
    small_disk: Path, tmp_path: Path, prefect_api: str
) -> None:
    inp, out = tmp_path / "in", small_disk / "out"
    inp.mkdir()
    photo("astronaut", (1536, 1536)).save(inp / "a-large.png")  # its outputs are larger than the disk
    make_clip(inp / "b-clip.mp4", audio=None, seconds=2.0, size="640x360")  # ffmpeg fills the disk
    photo("chelsea", (48, 32)).save(inp / "c-small.png")
    photo("coffee", (40, 40)).save(inp / "d-small.jpg", quality=90)
    photo("rocket", (40, 40)).save(inp / "e-locked.png")
    locked = out / f"e-locked-{sha256_file(inp / 'e-locked.png')[:8]}"
    locked.mkdir(parents=True)
    locked.chmod(0o555)  # an earlier run's folder, made read-only
    try:
        proc = run_cli_unprivileged("run", str(inp), "--out", str(out), "--set", "run.concurrency=1",
                                    "--set", "video.encode.preset=ultrafast", "--set", "image.upscale.method=lanczos",
                                    api_url=prefect_api)  # fmt: skip
    finally:
        locked.chmod(0o755)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    assert "2 done, 0 up to date, 3 failed" in proc.stdout, text

    for name, cause in (("a-large.png", "no space left on the output device"),
                        ("b-clip.mp4", "no space left on the output device"),
                        ("e-locked.png", "not writable")):  # fmt: skip
        failures = [line for line in lines_naming(proc.stderr, name) if "failed" in line]
        assert len(failures) == 1 and cause in failures[0], (name, lines_naming(proc.stderr, name))
        assert "bad input" not in failures[0].lower() and "ffmpeg failed" not in failures[0]
    # The line names where the output could not be written as the user knows it, never the staging folder.
    for name in ("a-large.png", "b-clip.mp4", "e-locked.png"):
        (line,) = [line for line in lines_naming(proc.stderr, name) if "failed" in line]
        assert f"{out}/{Path(name).stem}-" in line and STAGING_DIR not in line, line

    # Nothing half-written: the small stills complete, the failed assets have nothing, no staging is left.
    folders = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert [f.rsplit("-", 1)[0] for f in folders] == ["c-small", "d-small", "e-locked"], folders
    assert list(locked.iterdir()) == []
    for stem in ("c-small", "d-small"):
        (folder,) = [out / f for f in folders if f.startswith(stem)]
        assert {"cutout.png", "upscaled.png", "cutout.png.provenance.json", "upscaled.png.provenance.json"} <= {
            p.name for p in folder.iterdir()
        }
    assert not (out / STAGING_DIR).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    verified = run_cli("verify", str(out), api_url=None)
    assert verified.returncode == 0, verified.stdout


def _fill(disk: Path, leave: int) -> None:
    """Fill `disk` until only `leave` bytes are free (tmpfs counts whole pages)."""
    import shutil

    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    assert shutil.disk_usage(disk).free <= leave


@pytest.mark.parametrize("leave", [0, 4096, 16384])
def test_signing_on_a_nearly_full_disk_says_no_space_left_and_leaves_nothing_half_written(
    small_disk: Path, tmp_path: Path, leave: int
) -> None:
    """c2pa, rewriting a picture to embed its manifest with almost no room, fails with an opaque
    "Io: Other: UntrackedPointer" (c2pa-python 0.38, a few KiB free), or the signed copy's close
    fails with ENOSPC: either is the line every other output failure gives."""
    from assetline.provenance import InputRef, RunRef, StepRecord, ToolRef, build_manifest, write_manifest
    from assetline.provenance.signing import content_signer

    source = tmp_path / "chelsea.png"
    photo("chelsea", (48, 32)).save(source)
    output = small_disk / "graded.png"
    photo("chelsea", (48, 32)).convert("L").save(output)
    before = output.read_bytes()
    step = StepRecord(name="grade", tool=ToolRef(name="pillow", version="x"), parameters={},
                      started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z",
                      digital_source_type="algorithmicallyEnhanced", output=output.name)  # fmt: skip
    manifest = build_manifest(output, [InputRef(path=str(source), sha256=sha256_file(source), role="source")],
                              [step], "0" * 64, RunRef())  # fmt: skip
    signer, _ = content_signer(create=False)
    _fill(small_disk, leave)
    with pytest.raises(OutputError) as exc:
        write_manifest(output, manifest, signer)
    assert exc.value.line() == f"{output}: no space left on the output device"
    # Nothing half-written: no signing copy, no manifest store, no sidecar; the output as it was.
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "graded.png"]
    assert output.read_bytes() == before
