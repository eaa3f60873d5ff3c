"""Signing keys: the development CA `keys init` makes, where keys come from, and that they never leak."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from PIL import Image

from assetline import keys
from assetline.keys import KeysExistError, SigningError, configured_key, init_keys, signing_key, trust_anchors
from helpers import run_cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def own_keys(tmp_path, monkeypatch) -> Path:
    """An empty keys folder of this test's own, named by ASSETLINE_KEYS."""
    folder = tmp_path / "keys"
    monkeypatch.setenv("ASSETLINE_KEYS", str(folder))
    return folder


def test_keys_init_makes_a_ca_and_a_certificate_it_issued_with_private_keys_0600(own_keys):
    init_keys(own_keys)
    assert _mode(own_keys) == 0o700
    assert _mode(own_keys / "signer.key") == 0o600 and _mode(own_keys / "ca.key") == 0o600
    leaf, ca = x509.load_pem_x509_certificates((own_keys / "signer.pem").read_bytes())
    assert leaf.issuer == ca.subject and leaf.subject != ca.subject  # a chain, not one self-signed certificate
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (own_keys / "trust-anchors.pem").read_bytes() == (own_keys / "ca.pem").read_bytes()
    key = configured_key()
    assert key.alg == "es256" and "assetline development signer" in key.subject
    assert "PRIVATE" not in repr(key)


def test_keys_init_refuses_to_overwrite_unless_forced(own_keys):
    init_keys(own_keys)
    before = (own_keys / "signer.pem").read_bytes()
    with pytest.raises(KeysExistError):
        init_keys(own_keys)
    assert (own_keys / "signer.pem").read_bytes() == before
    init_keys(own_keys, alg="ed25519", force=True)
    assert (own_keys / "signer.pem").read_bytes() != before
    assert configured_key().alg == "ed25519"


@pytest.mark.slow
def test_run_makes_a_development_key_on_first_use_and_says_so_in_one_line(own_keys, tmp_path):
    """No key configured: `assetline run` makes one (outputs are never unsigned), once."""
    env = {"ASSETLINE_KEYS": str(own_keys)}
    first = run_cli("run", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"), api_url=None, env=env)
    notices = [line for line in first.stderr.splitlines() if "signing key" in line]
    assert len(notices) == 1 and str(own_keys) in notices[0], first.stderr
    assert (own_keys / "signer.key").is_file() and _mode(own_keys / "signer.key") == 0o600
    again = run_cli("run", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"), api_url=None, env=env)
    assert "signing key" not in again.stderr


def test_signing_key_is_made_once_and_not_at_all_when_creating_is_off(own_keys, monkeypatch):
    key, made = signing_key(create=True)
    assert made == own_keys
    again, made_again = signing_key(create=True)
    assert made_again is None and again.chain_pem == key.chain_pem
    monkeypatch.setenv("ASSETLINE_KEYS", str(own_keys.parent / "elsewhere"))
    with pytest.raises(SigningError, match="keys init"):
        signing_key(create=False)
    assert not (own_keys.parent / "elsewhere").exists()


def test_key_and_certificate_from_the_environment_as_files_or_pem_text(tmp_path, monkeypatch):
    ca, _, chain, key = keys.make_chain("ed25519", org="studio")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "key.pem").chmod(0o600)
    monkeypatch.setenv("ASSETLINE_KEYS", str(tmp_path / "unused"))
    monkeypatch.setenv("ASSETLINE_SIGNING_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("ASSETLINE_SIGNING_KEY", str(tmp_path / "key.pem"))
    found = configured_key()
    assert found.alg == "ed25519" and "studio signer" in found.subject
    monkeypatch.setenv("ASSETLINE_SIGNING_KEY", key.decode())  # the PEM text itself, e.g. from a secret store
    assert configured_key().key_pem == key
    monkeypatch.setenv("ASSETLINE_TRUST_ANCHORS", ca.decode())
    anchors, where = trust_anchors()
    assert anchors == ca.decode() and "environment" in where


@pytest.mark.parametrize("case", ["one_of_two", "key_readable_by_others", "wrong_key", "self_signed", "no_pem"])
def test_a_bad_key_configuration_is_one_clear_error(case, tmp_path, monkeypatch):
    _, _, chain, key = keys.make_chain()
    _, _, _, other_key = keys.make_chain()
    cert_file, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert_file.write_bytes(chain)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    monkeypatch.setenv("ASSETLINE_SIGNING_CERT", str(cert_file))
    monkeypatch.setenv("ASSETLINE_SIGNING_KEY", str(key_file))
    expected = {
        "one_of_two": "both",
        "key_readable_by_others": "readable by others",
        "wrong_key": "does not belong",
        "self_signed": "self-signed",
        "no_pem": "not an unencrypted PEM private key",
    }[case]
    if case == "one_of_two":
        monkeypatch.delenv("ASSETLINE_SIGNING_KEY")
    elif case == "key_readable_by_others":
        key_file.chmod(0o644)
    elif case == "wrong_key":
        key_file.write_bytes(other_key)
    elif case == "self_signed":
        ca_pem, ca_key, _, _ = keys.make_chain()
        cert_file.write_bytes(ca_pem)
        key_file.write_bytes(ca_key)
    elif case == "no_pem":
        key_file.write_bytes(b"not a key\n")
    with pytest.raises(SigningError, match=expected) as caught:
        configured_key()
    message = caught.value.line()
    assert "\n" not in message and "PRIVATE KEY" not in message


def test_keys_cli_init_and_show_print_how_to_trust_the_ca_and_never_a_private_key(tmp_path):
    folder = tmp_path / "studio-keys"
    made = run_cli("keys", "init", "--dir", str(folder), "--alg", "ed25519", api_url=None)
    assert made.returncode == 0, made.stderr
    assert "ASSETLINE_TRUST_ANCHORS" in made.stdout and str(folder / "ca.pem") in made.stdout
    shown = run_cli("keys", "show", api_url=None, env={"ASSETLINE_KEYS": str(folder)})
    assert shown.returncode == 0, shown.stderr
    assert "ed25519" in shown.stdout and str(folder / "trust-anchors.pem") in shown.stdout
    again = run_cli("keys", "init", "--dir", str(folder), api_url=None)
    assert again.returncode == 2 and "already exist" in again.stderr
    secret = (folder / "signer.key").read_text()
    body = "".join(secret.strip().splitlines()[1:-1])
    for text in (made.stdout, made.stderr, shown.stdout, shown.stderr, again.stdout, again.stderr):
        assert "PRIVATE KEY" not in text and body not in text


def test_an_ed25519_key_signs_a_jpeg_and_a_flipped_byte_in_it_fails_verify(tmp_path, monkeypatch):
    """The signer is not tied to the pipeline: any output, here a JPEG, signed with Ed25519."""
    from assetline.provenance import InputRef, RunRef, StepRecord, ToolRef, build_manifest, verify_output, write_manifest
    from assetline.provenance.credentials import read_credentials
    from assetline.provenance.signing import ContentSigner
    from assetline.storage import sha256_file

    folder = tmp_path / "keys"
    init_keys(folder, alg="ed25519")
    monkeypatch.setenv("ASSETLINE_KEYS", str(folder))
    source, output = tmp_path / "source.png", tmp_path / "out" / "graded.jpg"
    output.parent.mkdir()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(source)
    Image.new("RGB", (64, 48), (180, 60, 40)).save(output, quality=90)
    step = StepRecord(name="grade", tool=ToolRef(name="pillow", version="x"), parameters={"size": [64, 48]},
                      started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z",
                      digital_source_type="algorithmicallyEnhanced", output=output.name)  # fmt: skip
    source_ref = InputRef(path=str(source), sha256=sha256_file(source), role="source")
    manifest = build_manifest(output, [source_ref], [step], "0" * 64, RunRef())
    key, _ = signing_key(create=False)
    write_manifest(output, manifest, ContentSigner(key, trust_anchors()[0], "allowed"))
    assert verify_output(output).ok, verify_output(output).problems
    credentials = read_credentials(output, trust_anchors()[0])
    assert credentials.signature_info["alg"].lower() == "ed25519"
    assert credentials.assertion("cawg.training-mining")["entries"]["cawg.ai_training"]["use"] == "allowed"
    data = bytearray(output.read_bytes())
    data[-200] ^= 0x01  # in the picture data, after the embedded manifest
    output.write_bytes(bytes(data))
    problems = verify_output(output).problems
    assert len(problems) == 1 and "altered since it was made" in problems[0], problems
