"""A corrupt or unreadable user model list (`user-models.yaml`, or $ASSETLINE_USER_MODELS).

It is read on first need, never at import: `--help`, `--version`, `models list`
(built-ins and one warning line) and the `models add` that mends it still work;
what needs models (`run`, `models pull`, `models verify`) stops with one line
naming the file and the cause, exit 1, no traceback. All through the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assetline import models
from helpers import can_drop_dac_capabilities, drop_dac_capabilities

CLI = Path(sys.executable).with_name("assetline")  # the installed console script
CORRUPT = {
    "not_yaml": (b"my-whisper:\n  family: whisper\n  files: [model.bin,\n", "not valid YAML (line 4, column 1"),
    "not_utf8": (b"my-whisper:\n  family: \xff\xfe whisper\n", "not UTF-8 text (byte 22)"),
    "not_a_mapping": (b"- my-whisper\n- another\n", "not a model list"),
    "entry_without_files": (b"my-whisper:\n  family: whisper\n  path: /models/my-whisper\n", "entry 'my-whisper' has no 'files'"),
}


def assetline(*args: str, env: dict[str, str], user_models: Path, drop_dac: bool = False) -> subprocess.CompletedProcess:
    """`.venv/bin/assetline ARGS` with ASSETLINE_USER_MODELS set (and, for root, optionally without DAC override)."""
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    full.update(env, ASSETLINE_USER_MODELS=str(user_models), COLUMNS="200")
    return subprocess.run(  # noqa: PLW1509 - preexec_fn only calls prctl
        [str(CLI), *args], capture_output=True, text=True, env=full, timeout=600,
        preexec_fn=drop_dac_capabilities if drop_dac else None,
    )  # fmt: skip


def naming(proc: subprocess.CompletedProcess, path: Path) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if str(path) in line]


def assert_stops_with_one_line(proc: subprocess.CompletedProcess, path: Path, cause: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    (line,) = naming(proc, path)
    assert line == f"error: {path}: {line.split(': ', 2)[2]}" and cause in line, line


@pytest.fixture
def corrupt_list(tmp_path: Path, request) -> tuple[Path, bytes, str]:
    content, cause = CORRUPT[request.param]
    path = tmp_path / "user-models.yaml"
    path.write_bytes(content)
    return path, content, cause


@pytest.mark.parametrize("corrupt_list", list(CORRUPT), indirect=True)
def test_a_corrupt_list_stops_only_what_needs_models_with_one_line(corrupt_list, tmp_path):
    path, content, cause = corrupt_list
    env: dict[str, str] = {}
    for args in (["--help"], ["--version"], ["models", "--help"]):
        proc = assetline(*args, env=env, user_models=path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)

    listed = assetline("models", "list", env=env, user_models=path)
    assert listed.returncode == 0, listed.stderr
    (warning,) = naming(listed, path)
    assert warning.startswith(f"warning: {path}: ") and cause in warning, warning
    assert all(name in listed.stdout for name in models.BUILT_IN)

    src = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(src)
    ran = assetline("run", str(src), "--out", str(tmp_path / "out"), env=env, user_models=path)
    assert_stops_with_one_line(ran, path, cause)
    assert not (tmp_path / "out").exists()
    for args in (["models", "verify"], ["models", "pull"], ["models", "pull", "u2netp"]):
        assert_stops_with_one_line(assetline(*args, env=env, user_models=path), path, cause)
    assert path.read_bytes() == content  # untouched


def _whisper_folder(tmp_path: Path, pulled: Path) -> Path:
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    for f in models.get_spec("whisper-tiny.en").files:
        os.link(pulled / "whisper-tiny.en" / f.name, folder / f.name)
    return folder


def test_models_add_sets_a_corrupt_list_aside_keeps_its_readable_entries_and_writes_a_new_one(tmp_path, pulled_models):
    import yaml

    folder = _whisper_folder(tmp_path, pulled_models)
    path = tmp_path / "user-models.yaml"
    env: dict[str, str] = {}
    first = assetline("models", "add", "old-whisper", "--family", "whisper", "--path", str(folder), env=env, user_models=path)
    assert first.returncode == 0, first.stderr
    original = path.read_bytes() + b"broken: [\n"  # a good entry, then a hand edit gone wrong: not YAML
    path.write_bytes(original)
    repaired = assetline("models", "add", "my-whisper", "--family", "whisper", "--path", str(folder), env=env, user_models=path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    (backup,) = tmp_path.glob("user-models.yaml.corrupt-*")
    assert backup.read_bytes() == original  # nothing lost
    (warning,) = [line for line in repaired.stderr.splitlines() if "warning" in line]
    assert str(path) in warning and "not valid YAML" in warning and backup.name in warning, warning
    assert set(yaml.safe_load(path.read_text())) == {"my-whisper"}  # not YAML: nothing could be kept

    # Valid YAML with one bad entry: the good ones are kept.
    path.write_text(path.read_text() + "half-typed: {family: whisper}\n")
    again = assetline("models", "add", "old-whisper", "--family", "whisper", "--path", str(folder), env=env, user_models=path)
    assert again.returncode == 0, again.stderr
    assert "1 readable entry" in again.stderr and len(list(tmp_path.glob("user-models.yaml.corrupt-*"))) == 2
    assert set(yaml.safe_load(path.read_text())) == {"my-whisper", "old-whisper"}

    listed = assetline("models", "list", env=env, user_models=path)
    assert listed.returncode == 0 and "warning" not in listed.stderr, listed.stderr
    assert "my-whisper" in listed.stdout and "old-whisper" in listed.stdout
    verified = assetline("models", "verify", env=env, user_models=path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_unreadable_list_is_named_and_left_alone(tmp_path, pulled_models):
    folder = _whisper_folder(tmp_path, pulled_models)
    where = tmp_path / "user-models.yaml"
    where.mkdir()  # something that is not a file where the list should be
    added = assetline("models", "add", "my-whisper", "--family", "whisper", "--path", str(folder), env={}, user_models=where)
    assert_stops_with_one_line(added, where, "is a folder, not a file")
    assert where.is_dir() and not list(tmp_path.glob("*.corrupt-*"))

    if os.geteuid() == 0 and not can_drop_dac_capabilities():
        pytest.skip("root without CAP_SETPCAP: cannot make a file unreadable to the CLI")
    locked = tmp_path / "locked.yaml"
    locked.write_text("{}\n")
    locked.chmod(0o000)
    try:
        drop = os.geteuid() == 0
        listed = assetline("models", "list", env={}, user_models=locked, drop_dac=drop)
        assert listed.returncode == 0 and "cannot be read (permission denied)" in listed.stderr, listed.stderr
        ran = assetline("run", str(tmp_path), "--out", str(tmp_path / "out"), env={}, user_models=locked, drop_dac=drop)
        assert_stops_with_one_line(ran, locked, "cannot be read (permission denied)")
        added = assetline("models", "add", "my-whisper", "--family", "whisper", "--path", str(folder),
                          env={}, user_models=locked, drop_dac=drop)  # fmt: skip
        assert_stops_with_one_line(added, locked, "left as it is")
    finally:
        locked.chmod(0o644)
    assert locked.read_text() == "{}\n"


def test_importing_the_registry_reads_nothing_and_a_bad_list_raises_the_projects_error(tmp_path, monkeypatch):
    from assetline.errors import ModelError

    path = tmp_path / "user-models.yaml"
    path.write_bytes(CORRUPT["not_yaml"][0])
    monkeypatch.setenv("ASSETLINE_USER_MODELS", str(path))
    with pytest.raises(ModelError) as caught:
        models.load_user_models()
    assert caught.value.line().startswith(f"{path}: not valid YAML (line 4, column 1") and "\n" not in caught.value.line()
    probe = subprocess.run([sys.executable, "-c", "import assetline.models, assetline.cli"], capture_output=True,
                           text=True, env={**os.environ, "ASSETLINE_USER_MODELS": str(path)})  # fmt: skip
    assert probe.returncode == 0, probe.stderr
