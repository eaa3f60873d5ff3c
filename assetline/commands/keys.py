"""`assetline keys init|show`: the signing key for Content Credentials and the CAs verify trusts (`assetline.keys`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from assetline.commands._common import EXIT_FAILED, EXIT_USAGE, fail, out
from assetline.errors import AssetlineError

app = typer.Typer(help="Signing keys for Content Credentials (C2PA): make a development CA, show what is used.",
                  no_args_is_help=True)  # fmt: skip


@app.command("init")
def keys_init(
    folder: Annotated[Optional[Path], typer.Option("--dir", help="Where to put them (default: $ASSETLINE_KEYS or the user data folder).")] = None,
    alg: Annotated[str, typer.Option("--alg", help="es256 (EC P-256) or ed25519.")] = "es256",
    force: Annotated[bool, typer.Option("--force", help="Replace keys that are already there.")] = False,
) -> None:
    """Make a local CA and a signing certificate it issued (development and first use); keys get mode 0600."""
    from assetline.keys import init_keys, keys_dir, trust_instructions

    target = folder or keys_dir()
    try:
        made = init_keys(target, alg=alg.lower(), force=force)
    except AssetlineError as exc:
        fail(exc, EXIT_USAGE)
    name = {"es256": "ES256", "ed25519": "Ed25519"}[alg.lower()]
    out.print(f"made a development CA and an {name} signing certificate in {made} (private keys: mode 0600)", highlight=False)
    if folder is not None and folder.resolve() != keys_dir().resolve():
        out.print(f"use them: export ASSETLINE_KEYS={made.resolve()}", highlight=False)
    for line in trust_instructions(made):
        out.print(line, highlight=False)


@app.command("show")
def keys_show() -> None:
    """Which certificate signs outputs, and which CAs `verify` trusts (public facts only, never a key)."""
    from assetline.keys import CA_CERT, configured_key, describe_certificate, keys_dir, trust_anchors, trust_instructions

    try:
        key = configured_key()
        anchors, where = trust_anchors()
    except AssetlineError as exc:
        fail(exc, EXIT_FAILED)
    if key is None:
        out.print(f"signing key: none (in {keys_dir()}); `assetline run` makes a development one, or run `assetline keys init`", highlight=False)
    else:
        facts = describe_certificate(key.chain_pem)
        out.print(f"signing certificate: {key.origin}", highlight=False)
        out.print(f"  subject {facts['subject']}; issuer {facts['issuer']}; {key.alg}; valid until {facts['not_after']}", highlight=False)
        out.print(f"  sha256 fingerprint {facts['sha256_fingerprint']}", highlight=False)
        out.print(f"  timestamp authority: {key.tsa_url or 'none (ASSETLINE_TSA_URL unset)'}", highlight=False)
    count = anchors.count("-----BEGIN CERTIFICATE-----") if anchors else 0
    out.print(f"trust anchors for verify: {where}" + (f" ({count} certificate{'s' * (count != 1)})" if anchors else ""), highlight=False)
    if key is not None and (keys_dir() / CA_CERT).is_file():
        for line in trust_instructions(keys_dir()):
            out.print(line, highlight=False)
