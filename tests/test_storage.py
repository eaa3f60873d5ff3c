"""Outputs appear whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from assetline.storage import STAGING_DIR, publish, staging_folder, write_atomically


def test_a_failure_while_staging_leaves_nothing_in_the_output_tree(tmp_path):
    with pytest.raises(RuntimeError):
        with staging_folder(tmp_path, "asset-12345678") as stage:
            (stage / "cutout.png").write_bytes(b"half")
            raise RuntimeError("step failed")
    assert list(tmp_path.iterdir()) == []


def test_published_files_replace_old_ones_and_staging_disappears(tmp_path):
    final = tmp_path / "asset-12345678"
    final.mkdir()
    (final / "cutout.png").write_bytes(b"old")
    with staging_folder(tmp_path, final.name) as stage:
        (stage / "cutout.png").write_bytes(b"new")
        publish([stage / "cutout.png"], final)
    assert (final / "cutout.png").read_bytes() == b"new"
    assert not (tmp_path / STAGING_DIR).exists()


def test_atomic_write_leaves_no_temporary_file_and_ordinary_permissions(tmp_path):
    target = tmp_path / "x.json"
    write_atomically(target, b"{}")
    write_atomically(target, b"{\"a\": 1}")
    assert target.read_bytes() == b"{\"a\": 1}"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
