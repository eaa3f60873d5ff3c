"""Versions: every delivery over existing outputs keeps the earlier ones in `.versions/vNNN/`, chained by
hash in the signed manifests; `assetline versions` lists them, `verify` walks them, `versions.keep` prunes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import photo, run_cli

from assetline.provenance.manifest import Manifest
from assetline.versions import archive_current, history

LANCZOS = ["--set", "image.remove_background.enabled=false", "--set", "image.upscale.method=lanczos"]


def _run(inbox: Path, out: Path, api: str, *sets: str) -> None:
    args = ["run", str(inbox), "--out", str(out), *LANCZOS]
    for s in sets:
        args += ["--set", s]
    ran = run_cli(*args, api_url=api)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".provenance.json").read_text())


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    photo("chelsea", (96, 64)).save(folder / "chelsea.jpg", quality=92)
    return folder


def test_two_recipe_changes_make_three_versions_chained_by_hash_and_verify_walks_them(inbox, tmp_path, prefect_api):
    out = tmp_path / "out"
    for scale in (2, 3, 4):
        _run(inbox, out, prefect_api, f"image.upscale.scale={scale}")
    _run(inbox, out, prefect_api, "image.upscale.scale=4")  # up to date: no new version
    asset = next(out.glob("chelsea-*"))
    assert sorted(p.name for p in (asset / ".versions").iterdir()) == ["v001", "v002"]
    sizes = []
    for where in (asset / ".versions" / "v001", asset / ".versions" / "v002", asset):
        m = _sidecar(where / "upscaled.png")
        sizes.append(m["steps"][-1]["parameters"]["output_size"])
    assert sizes == [[192, 128], [288, 192], [384, 256]]  # each version is what its recipe made, kept whole

    current = _sidecar(asset / "upscaled.png")
    v2 = _sidecar(asset / ".versions" / "v002" / "upscaled.png")
    assert (current["version"], v2["version"], _sidecar(asset / ".versions" / "v001" / "upscaled.png")["version"]) == (3, 2, 1)
    assert current["previous"] == {"version": 2, "path": ".versions/v002/upscaled.png", "sha256": v2["output"]["sha256"]}

    import c2pa  # the previous version is an ingredient of the signed manifest, named by its hash

    reader = json.loads(c2pa.Reader(str(asset / "upscaled.png")).json())
    ingredients = reader["manifests"][reader["active_manifest"]]["ingredients"]
    assert {"title": ".versions/v002/upscaled.png", "relationship": "componentOf",
            "instance_id": f"sha256:{v2['output']['sha256']}"}.items() <= next(
        i for i in ingredients if i["relationship"] == "componentOf").items()  # fmt: skip

    listed = run_cli("versions", "chelsea.jpg", "--out", str(out), api_url=prefect_api, env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith("│ v")]
    assert [r.split("│")[1].strip() for r in rows] == ["v1", "v2", "v3"]
    assert current["recipe_sha256"][:12] in rows[2] and "current" in rows[2] and ".versions/v001" in listed.stdout

    checked = run_cli("verify", str(asset), api_url=prefect_api)
    assert checked.returncode == 0 and "versions: v3 <- v2 <- v1" in checked.stdout, checked.stdout

    # An earlier version replaced afterwards is found out, naming the version.
    kept = asset / ".versions" / "v001" / "upscaled.png"
    altered = asset / ".versions" / "v002" / "upscaled.png"
    altered.unlink()
    altered.write_bytes(kept.read_bytes())
    broken = run_cli("verify", str(asset / "upscaled.png"), api_url=prefect_api)
    assert broken.returncode == 1 and "previous version v2 (.versions/v002/upscaled.png) has changed since" in broken.stdout


def test_a_crash_after_archiving_archives_nothing_twice_and_the_next_delivery_follows_on(inbox, tmp_path, prefect_api):
    out = tmp_path / "out"
    _run(inbox, out, prefect_api, "image.upscale.scale=2")
    asset = next(out.glob("chelsea-*"))
    (asset / ".versions" / ".new-v001.dead").mkdir(parents=True)  # a gathering cut short by a kill
    number, replaced = archive_current(asset)  # as a run killed right after archiving leaves it
    assert (number, replaced.number) == (2, 1)
    assert archive_current(asset)[0] == 2  # again: the same, nothing archived twice
    assert sorted(p.name for p in (asset / ".versions").iterdir()) == ["v001"]
    _run(inbox, out, prefect_api, "image.upscale.scale=3")
    assert [(v.number, v.current) for v in history(asset)] == [(1, False), (2, True)]
    assert _sidecar(asset / "upscaled.png")["previous"]["version"] == 1


def test_retention_keeps_the_current_and_the_latest_approved_and_a_rejection_is_listed(inbox, tmp_path, prefect_api):
    out = tmp_path / "out"
    always, never = "review.required=always", "review.required=never"
    _run(inbox, out, prefect_api, "image.upscale.scale=2", always, "versions.keep=2")
    approved = run_cli("review", "approve", "chelsea.jpg", "--by", "Ana Editor", "--out", str(out), api_url=prefect_api)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    _run(inbox, out, prefect_api, "image.upscale.scale=3", always, "versions.keep=2")
    rejected = run_cli("review", "reject", "chelsea.jpg", "--by", "Bo Producer", "--comment", "too soft",
                       "--out", str(out), api_url=prefect_api)  # fmt: skip
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    asset = next(out.glob("chelsea-*"))
    assert [v.number for v in history(asset)] == [1]  # nothing delivered on reject
    listed = run_cli("versions", asset.name, "--out", str(out), api_url=prefect_api, env={"COLUMNS": "200"})
    assert "approve by Ana Editor" in listed.stdout and "reject by Bo Producer" in listed.stdout and "too soft" in listed.stdout

    # A rerun after the rejection is a new version; then two more recipe changes, keeping 2.
    for scale in (3, 4):
        args = [*(["--retry-rejected"] if scale == 3 else []), "--set", f"image.upscale.scale={scale}", "--set", never,
                "--set", "versions.keep=2"]  # fmt: skip
        ran = run_cli("run", str(inbox), "--out", str(out), *LANCZOS, *args, api_url=prefect_api)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    _run(inbox, out, prefect_api, "image.upscale.scale=2", never, "versions.keep=2")
    kept = [(v.number, v.current, v.review.by if v.review else None) for v in history(asset)]
    assert kept == [(1, False, "Ana Editor"), (4, True, None)]  # v2 and v3 went; the approved v1 stays
    checked = run_cli("verify", str(asset), api_url=prefect_api)
    assert checked.returncode == 0 and "versions: v4 <- v3 (not kept)" in checked.stdout, checked.stdout


def test_a_sidecar_from_before_versions_reads_back_byte_for_byte(tmp_path):
    from assetline.provenance.manifest import Generator, OutputRef, RunRef, disclose

    made = Manifest(output=OutputRef(path="x.png", sha256="0" * 64, bytes=1, media_type="image/png"), inputs=[], steps=[],
                    run=RunRef(), generator=Generator(version="0"), recipe_sha256="1" * 64, ai_disclosure=disclose([]))  # fmt: skip
    old = json.loads(made.to_json())
    assert "version" not in old and "previous" not in old  # as written before versions existed
    again = Manifest.model_validate_json(json.dumps(old, indent=2))
    assert again.version == 1 and again.to_json() == made.to_json()
    assert '"version": 1' in Manifest.model_validate_json(made.model_copy(update={"version": 1}).to_json()).to_json().decode()


def test_versions_of_an_unknown_name_says_so_in_one_line(tmp_path):
    os.makedirs(tmp_path / "out")
    listed = run_cli("versions", "nothing.jpg", "--out", str(tmp_path / "out"), api_url=None)
    assert listed.returncode == 1 and "nothing.jpg: no delivered asset by that name" in listed.stderr
