"""Bad input: every bad file fails on its own, with one clear line, and leaves no trace.

One shared `assetline run` over a folder holding every kind of bad file next to
good ones (a small photo, a 1x1 image, a file name with spaces, quotes and
non-ASCII letters). Each bad file must give one line naming the file and the
cause (no traceback), be marked failed in the results table and in Prefect,
leave nothing in the output tree, and leave the inputs exactly as they were;
the good files must all complete.

The unreadable file is its own run: as root, permissions are enforced by
running the CLI without the capabilities that let root read anything.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import can_drop_dac_capabilities, drop_dac_capabilities, photo, run_cli, tree_state

pytestmark = pytest.mark.slow  # a real Prefect server, serve, workers or long media: `-m 'not slow'` skips it

STAGING = ".assetline-staging"

# Good inputs: all must be processed.
GOOD_PHOTO = "chelsea.jpg"
ONE_PIXEL = "pixel.png"
ODD_NAME = "it's a \"quoted\" café photo – Ærø Ünïcødé 日本.jpg"

# Bad inputs: each must fail on its own.
ZERO_BYTES = "empty.png"
TRUNCATED_PNG = "truncated.png"
TRUNCATED_JPEG = "truncated.jpg"
TEXT_AS_PNG = "notes.png"
BOMB = "bomb.png"
LINK_OUT = "outside-link.jpg"

BAD_WITH_FLOW_RUN = [ZERO_BYTES, TRUNCATED_PNG, TRUNCATED_JPEG, TEXT_AS_PNG, BOMB]
GOOD = [GOOD_PHOTO, ONE_PIXEL, ODD_NAME]
OUTPUTS = ["cutout.png", "upscaled.png"]

# The CLI as a user meets it when its output goes to a file or a pipe: 80 columns
# (a finding must still be one line), and Prefect's console logging left at the
# level `assetline` picks itself (conftest sets WARNING for this process, which
# would otherwise leak into the CLI and print Prefect's own tracebacks).
CLI_ENV = {"COLUMNS": "80", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


# --------------------------------------------------------------------------- helpers


def write_png_bomb(path: Path, width: int = 40_000, height: int = 40_000) -> None:
    """A real, valid 1-bit greyscale PNG of width x height, streamed chunk by chunk (never in Pillow)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, colour type 0 (grey)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte "none", then the packed bits
    rows_per_batch = 500
    comp = zlib.compressobj(9)
    idat = bytearray()
    done = 0
    while done < height:
        n = min(rows_per_batch, height - done)
        idat += comp.compress(row * n)
        done += n
    idat += comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))


def write_truncated(path: Path, fmt: str, name: str, size: tuple[int, int]) -> None:
    """A real photo, saved, then cut to the first half of its bytes."""
    photo(name, size).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def sha8(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def output_folder(path: Path) -> str:
    """`<stem>-<sha8>`: the names used here need no sanitising."""
    return f"{path.stem}-{sha8(path)}"


def combined(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def line_naming(proc: subprocess.CompletedProcess, name: str, *causes: str) -> str:
    """The one output line that names `name` and (case-insensitively) any of `causes`."""
    lines = combined(proc).splitlines()
    hits = [ln for ln in lines if name in ln and any(c.lower() in ln.lower() for c in causes)]
    assert hits, (
        f"no single line names {name!r} together with a cause like {causes}; "
        f"lines naming it: {[ln for ln in lines if name in ln]}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return hits[0]


def table_row_failed(proc: subprocess.CompletedProcess, name: str) -> None:
    """The results table (stdout) has a row for `name` whose status is `failed`."""
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("│") and name in ln]
    assert rows, f"no table row names {name!r}:\n{proc.stdout}"
    cells = [c.strip() for c in rows[0].strip("│").split("│")]
    assert cells[1] == "failed", f"table row for {name!r}: {cells}"


def table_row_done(proc: subprocess.CompletedProcess, name: str) -> None:
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("│") and name in ln]
    assert rows, f"no table row names {name!r}:\n{proc.stdout}"
    cells = [c.strip() for c in rows[0].strip("│").split("│")]
    assert cells[1] == "done", f"table row for {name!r}: {cells}"


def flow_runs_for(api_url: str, path: Path) -> list:
    """Flow runs on the test server whose name starts with the file's name and whose `path` is this file."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=path.name)))
    return [r for r in runs if r.name.startswith(path.name) and r.parameters.get("path") == str(path)]


def assert_failed_in_prefect(api_url: str, path: Path) -> None:
    from prefect.client.schemas.objects import StateType

    runs = flow_runs_for(api_url, path)
    assert runs, f"no flow run for {path.name!r}"
    states = [(r.name, r.state_type) for r in runs]
    assert all(r.state_type == StateType.FAILED for r in runs), states


def assert_completed_in_prefect(api_url: str, path: Path) -> None:
    from prefect.client.schemas.objects import StateType

    runs = flow_runs_for(api_url, path)
    assert runs, f"no flow run for {path.name!r}"
    states = [(r.name, r.state_type) for r in runs]
    assert all(r.state_type == StateType.COMPLETED for r in runs), states
    assert any(r.name == f"{path.name} · {sha8(path)}" for r in runs), states


def assert_outputs_complete(out: Path, src: Path) -> None:
    folder = out / output_folder(src)
    assert folder.is_dir(), f"no output folder for {src.name!r}; OUT holds {sorted(p.name for p in out.iterdir())}"
    for name in OUTPUTS:
        assert (folder / name).is_file(), f"{folder / name} missing"
        assert (folder / f"{name}.provenance.json").is_file(), f"sidecar for {folder / name} missing"


def assert_no_output_for(out: Path, src: Path) -> None:
    stem = src.stem
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(f"{stem}-")] if out.exists() else []
    assert not leftovers, f"output left for failed {src.name!r}: {leftovers}"


# --------------------------------------------------------------------------- the shared run


@dataclass
class BadRun:
    proc: subprocess.CompletedProcess
    inp: Path
    out: Path
    outside: Path
    before: dict
    outside_before: dict
    api_url: str


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> BadRun:
    root = tmp_path_factory.mktemp("bad-input")
    inp, out, outside = root / "in", root / "out", root / "elsewhere"
    inp.mkdir()
    outside.mkdir()

    photo("chelsea", (96, 64)).save(inp / GOOD_PHOTO, quality=92)
    photo("astronaut", (1, 1)).save(inp / ONE_PIXEL)
    photo("coffee", (96, 64)).save(inp / ODD_NAME, quality=92)

    (inp / ZERO_BYTES).write_bytes(b"")
    write_truncated(inp / TRUNCATED_PNG, "PNG", "astronaut", (128, 128))
    write_truncated(inp / TRUNCATED_JPEG, "JPEG", "rocket", (128, 96))
    (inp / TEXT_AS_PNG).write_text("These are notes, not a picture.\n" * 20, encoding="utf-8")
    write_png_bomb(inp / BOMB)

    # A real photo outside the input folder, reached only through a symlink inside it.
    photo("rocket", (64, 64)).save(outside / "outside.jpg", quality=92)
    (inp / LINK_OUT).symlink_to(outside / "outside.jpg")

    before, outside_before = tree_state(inp), tree_state(outside)
    proc = run_cli("run", str(inp), "--out", str(out), api_url=prefect_api, env=CLI_ENV)
    return BadRun(proc, inp, out, outside, before, outside_before, prefect_api)


# --------------------------------------------------------------------------- the run as a whole


def test_run_with_bad_files_exits_1(bad_run: BadRun) -> None:
    assert bad_run.proc.returncode == 1, combined(bad_run.proc)


def test_no_traceback_is_printed(bad_run: BadRun) -> None:
    assert "Traceback" not in combined(bad_run.proc), combined(bad_run.proc)


def test_summary_counts_the_good_files_done_and_the_bad_ones_failed(bad_run: BadRun) -> None:
    n_bad = len(BAD_WITH_FLOW_RUN) + 1  # + the symlink
    assert f"{len(GOOD)} done, 0 up to date, {n_bad} failed" in bad_run.proc.stdout, bad_run.proc.stdout


def test_inputs_are_unchanged(bad_run: BadRun) -> None:
    assert tree_state(bad_run.inp) == bad_run.before
    assert tree_state(bad_run.outside) == bad_run.outside_before


def test_no_partial_output_or_staging_is_left(bad_run: BadRun) -> None:
    out = bad_run.out
    assert not (out / STAGING).exists()
    expected = {output_folder(bad_run.inp / name) for name in GOOD}
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == expected  # not the hidden lock files
    for folder in expected:
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(
            OUTPUTS + [f"{n}.provenance.json" for n in OUTPUTS]
        ), f"unexpected files in {folder}"


# --------------------------------------------------------------------------- good files complete


def test_a_good_photo_next_to_bad_files_completes(bad_run: BadRun) -> None:
    src = bad_run.inp / GOOD_PHOTO
    assert_outputs_complete(bad_run.out, src)
    table_row_done(bad_run.proc, GOOD_PHOTO)
    assert_completed_in_prefect(bad_run.api_url, src)


def test_a_1x1_image_is_processed(bad_run: BadRun) -> None:
    from PIL import Image

    src = bad_run.inp / ONE_PIXEL
    assert_outputs_complete(bad_run.out, src)
    table_row_done(bad_run.proc, ONE_PIXEL)
    assert_completed_in_prefect(bad_run.api_url, src)
    folder = bad_run.out / output_folder(src)
    with Image.open(folder / "cutout.png") as cutout:
        assert cutout.size == (1, 1) and cutout.mode == "RGBA"
    with Image.open(folder / "upscaled.png") as upscaled:
        assert upscaled.size == (2, 2)


def test_a_file_name_with_spaces_quotes_and_non_ascii_letters_is_processed(bad_run: BadRun) -> None:
    src = bad_run.inp / ODD_NAME
    assert_outputs_complete(bad_run.out, src)
    assert_completed_in_prefect(bad_run.api_url, src)
    rows = [ln for ln in bad_run.proc.stdout.splitlines() if ln.startswith("│") and "quoted" in ln]
    assert rows and "done" in rows[0], bad_run.proc.stdout


# --------------------------------------------------------------------------- each bad file


@pytest.mark.parametrize(
    ("name", "causes", "detail"),
    [
        pytest.param(ZERO_BYTES, ("empty", "0 bytes"), None, id="zero-byte file"),
        pytest.param(TRUNCATED_PNG, ("truncated",), None, id="truncated png"),
        pytest.param(TRUNCATED_JPEG, ("truncated",), None, id="truncated jpeg"),
        pytest.param(TEXT_AS_PNG, ("not a recognised",), None, id="text named png"),
        pytest.param(BOMB, ("limit",), "40000x40000", id="decompression bomb, refused before decoding"),
    ],
)
def test_a_bad_file_fails_with_one_line_naming_it_in_the_table_and_in_prefect_and_makes_nothing(
    bad_run: BadRun, name: str, causes: tuple[str, ...], detail: str | None
) -> None:
    line = line_naming(bad_run.proc, name, *causes)
    if detail:
        assert detail in line, line
    table_row_failed(bad_run.proc, name)
    assert_failed_in_prefect(bad_run.api_url, bad_run.inp / name)
    assert_no_output_for(bad_run.out, bad_run.inp / name)


def test_symlink_pointing_outside_the_folder_is_reported_and_not_followed(bad_run: BadRun) -> None:
    line_naming(bad_run.proc, LINK_OUT, "symlink")
    table_row_failed(bad_run.proc, LINK_OUT)
    target = bad_run.outside / "outside.jpg"
    assert_no_output_for(bad_run.out, bad_run.inp / LINK_OUT)
    assert not (bad_run.out / output_folder(target)).exists()
    assert_no_output_for(bad_run.out, target)
    # Rejected before any flow starts: no flow run for the link, none for its target.
    assert flow_runs_for(bad_run.api_url, bad_run.inp / LINK_OUT) == []
    assert flow_runs_for(bad_run.api_url, target) == []


def test_each_failure_is_printed_once_as_one_line(bad_run: BadRun) -> None:
    lines = bad_run.proc.stderr.splitlines()
    for name in BAD_WITH_FLOW_RUN + [LINK_OUT]:
        mentions = [ln for ln in lines if name in ln]
        assert len(mentions) == 1, f"{name!r} mentioned {len(mentions)} times in stderr: {mentions}"


# --------------------------------------------------------------------------- unreadable file


def _run_cli_without_dac_override(*args: str, api_url: str) -> subprocess.CompletedProcess:
    """`run_cli`, but the child cannot read what its permissions forbid, even as root."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_API_URL"] = api_url
    return subprocess.run(  # noqa: PLW1509 - preexec_fn only calls prctl
        [sys.executable, "-m", "assetline.cli", *args],
        capture_output=True, text=True, env={**env, **CLI_ENV}, timeout=1800,
        preexec_fn=drop_dac_capabilities,
    )  # fmt: skip


def test_unreadable_file_fails_with_permission_denied(tmp_path: Path, prefect_api: str) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    good, locked = inp / "coffee.jpg", inp / "locked.jpg"
    photo("coffee", (96, 64)).save(good, quality=92)
    photo("rocket", (96, 64)).save(locked, quality=92)
    locked_sha8 = sha8(locked)
    if os.geteuid() == 0 and not can_drop_dac_capabilities():
        pytest.skip("root without CAP_SETPCAP: cannot make a file unreadable to the CLI")
    locked.chmod(0o000)
    try:
        before = tree_state_readable(inp)
        if os.geteuid() == 0:  # root reads mode-000 files: run the CLI without that privilege
            proc = _run_cli_without_dac_override("run", str(inp), "--out", str(out), api_url=prefect_api)
        else:
            proc = run_cli("run", str(inp), "--out", str(out), api_url=prefect_api, env=CLI_ENV)
        after = tree_state_readable(inp)
    finally:
        locked.chmod(0o644)

    assert proc.returncode == 1, combined(proc)
    assert "Traceback" not in combined(proc), combined(proc)
    line_naming(proc, "locked.jpg", "permission")
    table_row_failed(proc, "locked.jpg")
    assert_failed_in_prefect(prefect_api, locked)
    table_row_done(proc, "coffee.jpg")
    assert_outputs_complete(out, good)
    assert_completed_in_prefect(prefect_api, good)
    assert not (out / f"locked-{locked_sha8}").exists()
    assert_no_output_for(out, locked)
    assert not (out / STAGING).exists()
    assert after == before


def tree_state_readable(folder: Path) -> dict:
    """`tree_state` plus each file's mode, for a folder holding a file this process may not read."""
    state = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            try:
                data = p.read_bytes()
            except PermissionError:
                data = None
            state[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_mode, data)
    return state
