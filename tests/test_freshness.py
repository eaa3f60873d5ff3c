"""Fresh is not trusted: a rerun skips outputs that are intact and current, whoever signed them.

With a production-style key (ASSETLINE_SIGNING_CERT / ASSETLINE_SIGNING_KEY) and
no trust anchors configured, outputs validate (C2PA state Valid) but their signer
is on no trust list. That is `assetline verify`'s question (exit 1, naming the
signer), not the up-to-date check's: a rerun on unchanged input does no work.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from assetline.keys import init_keys, trust_anchors
from helpers import photo, run_cli, tree_state

SIGNER = "assetline development signer"  # the common name `keys init` gives the signing certificate
RECIPE_SHA = "1" * 64


@pytest.fixture
def untrusted_key(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A signing key named by ASSETLINE_SIGNING_CERT/KEY, with no trust anchors anywhere.

    The keys folder (ASSETLINE_KEYS) is an empty one, so the session's development
    CA (`trust-anchors.pem` there) does not apply; ASSETLINE_TRUST_ANCHORS is unset.
    Returns the environment for a CLI child.
    """
    made = tmp_path / "studio-keys"
    init_keys(made)
    env = {
        "ASSETLINE_SIGNING_CERT": str(made / "signer.pem"),
        "ASSETLINE_SIGNING_KEY": str(made / "signer.key"),
        "ASSETLINE_KEYS": str(tmp_path / "no-keys-here"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ASSETLINE_TRUST_ANCHORS", raising=False)
    assert trust_anchors()[0] is None  # nothing is trusted
    return env


def _signed_outputs(tmp_path: Path):
    """A source and, in its output folder, a signed PNG (embedded manifest) and SRT (`.c2pa` beside it)."""
    from assetline.assets import Asset, output_folder_name
    from assetline.provenance import InputRef, RunRef, StepRecord, ToolRef, build_manifest, write_manifest
    from assetline.provenance.signing import content_signer
    from assetline.storage import sha256_file

    source = tmp_path / "in" / "chelsea.png"
    source.parent.mkdir()
    photo("chelsea", (48, 32)).save(source)
    sha = sha256_file(source)
    out_root = tmp_path / "out"
    folder = out_root / output_folder_name(source, sha)
    folder.mkdir(parents=True)
    signer, made = content_signer(create=False)  # the signer outputs are published with
    assert made is None
    source_ref = InputRef(path=str(source), sha256=sha, role="source")
    for name, write in (("graded.png", lambda p: Image.new("RGB", (48, 32), (180, 60, 40)).save(p)),
                        ("subtitles.srt", lambda p: p.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n"))):  # fmt: skip
        output = folder / name
        write(output)
        step = StepRecord(name="grade", tool=ToolRef(name="pillow", version="x"), parameters={},
                          started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z",
                          digital_source_type="algorithmicallyEnhanced", output=name)  # fmt: skip
        write_manifest(output, build_manifest(output, [source_ref], [step], RECIPE_SHA, RunRef()), signer)
    asset = Asset(path=source, sha256=sha, kind="image", bytes=source.stat().st_size)
    return asset, out_root, folder


def test_an_intact_output_signed_outside_the_trust_anchors_is_up_to_date_but_not_trusted(untrusted_key, tmp_path):
    from assetline.assets import is_up_to_date
    from assetline.provenance import verify_output

    asset, out_root, folder = _signed_outputs(tmp_path)
    for name in ("graded.png", "subtitles.srt"):
        fresh = verify_output(folder / name, require_trust=False)
        assert fresh.ok, (name, fresh.problems)
        assert fresh.credentials.state == "Valid" and not fresh.credentials.trusted
        trusted = verify_output(folder / name)
        assert len(trusted.problems) == 1, trusted.problems
        assert "outside the trust anchors" in trusted.problems[0] and SIGNER in trusted.problems[0]
    assert is_up_to_date(asset, out_root, ["graded.png", "subtitles.srt"], RECIPE_SHA)
    assert not is_up_to_date(asset, out_root, ["graded.png", "subtitles.srt"], "2" * 64)  # another recipe


def test_freshness_keeps_every_integrity_check(untrusted_key, tmp_path, monkeypatch):
    from assetline.assets import is_up_to_date
    from assetline.provenance import verify_output

    asset, out_root, folder = _signed_outputs(tmp_path)
    # Unreadable trust anchors are verify's problem, not freshness's.
    (tmp_path / "anchors.pem").write_text("not a certificate\n")
    monkeypatch.setenv("ASSETLINE_TRUST_ANCHORS", str(tmp_path / "anchors.pem"))
    assert verify_output(folder / "graded.png", require_trust=False).ok
    assert any("trust anchors" in p for p in verify_output(folder / "graded.png").problems)
    assert is_up_to_date(asset, out_root, ["graded.png", "subtitles.srt"], RECIPE_SHA)

    srt = folder / "subtitles.srt"
    srt.write_text(srt.read_text().replace("hello", "hullo"))  # same size, other bytes
    problems = verify_output(srt, require_trust=False).problems
    assert problems and "altered since it was made" in problems[0], problems
    assert not is_up_to_date(asset, out_root, ["graded.png", "subtitles.srt"], RECIPE_SHA)

    png = folder / "graded.png"
    data = bytearray(png.read_bytes())
    data[-200] ^= 0x01  # in the picture data, after the embedded manifest
    png.write_bytes(bytes(data))
    assert not verify_output(png, require_trust=False).ok
    assert not is_up_to_date(asset, out_root, ["graded.png"], RECIPE_SHA)


@pytest.mark.slow
def test_rerun_with_a_production_key_and_no_anchors_is_up_to_date_and_verify_says_untrusted(
    untrusted_key, prefect_api, tmp_path
):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    photo("chelsea", (96, 64)).save(inputs / "chelsea.jpg", quality=92)
    env = untrusted_key | {"COLUMNS": "200"}
    first = run_cli("run", str(inputs), "--out", str(out), api_url=prefect_api, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 done, 0 up to date, 0 failed" in first.stdout, first.stdout
    assert "signing key" not in first.stderr  # the configured key was used: no development CA was made
    before = tree_state(out)

    again = run_cli("run", str(inputs), "--out", str(out), api_url=prefect_api, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 done, 1 up to date, 0 failed" in again.stdout, again.stdout
    assert tree_state(out) == before  # no model work: bytes and mtimes kept

    checked = run_cli("verify", str(out), api_url=None, env=env)
    assert checked.returncode == 1, checked.stdout
    failed = [line for line in checked.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, checked.stdout  # cutout.png and upscaled.png, one line each
    assert all("outside the trust anchors" in line and SIGNER in line for line in failed), failed
    assert "0 of 2 outputs verified" in checked.stdout
