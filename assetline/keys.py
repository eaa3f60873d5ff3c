"""Signing keys for Content Credentials: where they are, how they are made, what verify trusts.

assetline signs every output with a certificate chain and its private key
(ES256 on P-256, or Ed25519). They come from, in order:

1. `ASSETLINE_SIGNING_CERT` and `ASSETLINE_SIGNING_KEY`: each a PEM file's path,
   or the PEM text itself (a value starting with `-----BEGIN`); both or neither;
2. the keys folder, `$ASSETLINE_KEYS` (default: `keys/` in the user's data
   folder, beside Prefect's home): `signer.pem` (signing certificate, then its
   CA) and `signer.key` (mode 0600).

When neither holds a key, `assetline run` makes a development CA and signing
certificate in the keys folder (as `assetline keys init` does) and says so in
one line: outputs are never written unsigned. c2pa refuses a lone self-signed
certificate; a CA plus an end-entity certificate validates.

Verify trusts the CAs in `ASSETLINE_TRUST_ANCHORS` (a PEM file's path or PEM
text), else `trust-anchors.pem` in the keys folder (the development CA once
`keys init` has run). An RFC 3161 timestamp authority is used only when
`ASSETLINE_TSA_URL` is set. Private keys are read to sign and never written
anywhere else, never logged, never put into a manifest or an error message.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

from assetline.errors import AssetlineError
from assetline.storage import write_atomically
from assetline.settings import settings

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SIGNER_CERT, SIGNER_KEY = "signer.pem", "signer.key"
TRUST_ANCHORS = "trust-anchors.pem"
ALGORITHMS = ("es256", "ed25519")
_PEM = "-----BEGIN"


class SigningError(AssetlineError):
    """No usable signing key or certificate, or trust anchors that cannot be read."""


def keys_dir() -> Path:
    return settings().keys or Path(user_data_dir("assetline")) / "keys"


@dataclass(frozen=True)
class SigningKey:
    """A certificate chain and its private key, ready for c2pa; `origin` says where they came from."""

    chain_pem: bytes  # end-entity certificate first, then the CA(s)
    key_pem: bytes = b""  # never printed: repr leaves it out
    alg: str = "es256"
    origin: str = ""
    tsa_url: str | None = None

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SigningKey(alg={self.alg!r}, origin={self.origin!r}, tsa_url={self.tsa_url!r})"

    @property
    def subject(self) -> str:
        return describe_certificate(self.chain_pem)["subject"]


def _pem_from(value: str, what: str) -> tuple[bytes, str]:
    """An env value is PEM text itself or a file's path; returns the bytes and how to name it."""
    if value.lstrip().startswith(_PEM):
        return value.encode(), f"{what} (from the environment)"
    path = Path(value).expanduser()
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise SigningError(path, f"cannot read {what}: {exc.strerror}") from None


def _check_private_file(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningError(path, f"private key is readable by others (mode {mode:o}); chmod 600 it")


def _algorithm_of(key_pem: bytes, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise SigningError(where, "not an unencrypted PEM private key") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return "es256"
    raise SigningError(where, "unsupported key type: use ES256 (EC P-256) or Ed25519")


def _check_pair(chain_pem: bytes, key_pem: bytes, where: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise SigningError(where, "signing certificate is not a PEM certificate chain") from None
    leaf = certs[0]
    public = load_pem_private_key(key_pem, password=None).public_key()
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*raw) != public.public_bytes(*raw):
        raise SigningError(where, "private key does not belong to the signing certificate")
    if leaf.issuer == leaf.subject:
        raise SigningError(where, "signing certificate is self-signed: c2pa needs a CA and a certificate it issued "
                                  "(assetline keys init makes both)")  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise SigningError(where, f"signing certificate is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} "
                                  f"to {leaf.not_valid_after_utc:%Y-%m-%d})")  # fmt: skip


def configured_key() -> SigningKey | None:
    """The signing key the environment or the keys folder names; None when there is none."""
    env = settings()
    tsa, cert_env, key_env = env.tsa_url, env.signing_cert, env.signing_key
    if cert_env or key_env:
        if not (cert_env and key_env):
            raise SigningError("signing key", "set both ASSETLINE_SIGNING_CERT and ASSETLINE_SIGNING_KEY, or neither")
        chain, chain_where = _pem_from(cert_env, "signing certificate")
        key, key_where = _pem_from(key_env, "private key")
        if not key_env.lstrip().startswith(_PEM):
            _check_private_file(Path(key_env).expanduser())
        origin = chain_where
    else:
        folder = keys_dir()
        cert_path, key_path = folder / SIGNER_CERT, folder / SIGNER_KEY
        if not cert_path.is_file() and not key_path.is_file():
            return None
        for path in (cert_path, key_path):
            if not path.is_file():
                raise SigningError(path, "missing: the keys folder is incomplete (assetline keys init --force remakes it)")
        _check_private_file(key_path)
        chain, key, origin, key_where = cert_path.read_bytes(), key_path.read_bytes(), str(cert_path), str(key_path)
    alg = _algorithm_of(key, key_where)
    _check_pair(chain, key, origin)
    return SigningKey(chain_pem=chain, key_pem=key, alg=alg, origin=origin, tsa_url=tsa)


_create_lock = threading.Lock()


def signing_key(create: bool = True) -> tuple[SigningKey, Path | None]:
    """The configured key; with none and `create`, a development CA and key made now.

    Returns the key and, when it was just made, the folder it was made in (for
    the one-line notice); raises `SigningError` when there is none to use.
    """
    found = configured_key()
    if found is not None:
        return found, None
    if not create:
        raise SigningError("signing key", f"none configured on this machine ({keys_dir()}): run `assetline keys init` "
                                          "once and give every machine that keys folder (ASSETLINE_KEYS), or set "
                                          "ASSETLINE_SIGNING_CERT and ASSETLINE_SIGNING_KEY (a file or the PEM)")  # fmt: skip
    with _create_lock:
        folder = keys_dir()
        try:
            made: Path | None = init_keys(folder)
        except KeysExistError:
            made = None  # another process made them just now
        key = configured_key()
        if key is None:
            raise SigningError(folder, "no signing key here after creating one")
        return key, made


def trust_anchors() -> tuple[str | None, str]:
    """The PEM text of the CAs verify trusts, and where it came from (None when none is configured)."""
    env = settings().trust_anchors
    if env:
        pem, where = _pem_from(env, "trust anchors")
    else:
        path = keys_dir() / TRUST_ANCHORS
        if not path.is_file():
            return None, f"none configured (no ASSETLINE_TRUST_ANCHORS, no {path})"
        pem, where = path.read_bytes(), str(path)
    text = pem.decode("ascii", errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SigningError(where, "trust anchors hold no PEM certificate")
    return text, where


def describe_certificate(chain_pem: bytes) -> dict:
    """Subject, issuer, validity and fingerprint of the first certificate of a chain (public facts only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificates(chain_pem)[0]
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%d"),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
    }


# --------------------------------------------------------------------------- making a development CA


class KeysExistError(SigningError):
    """`keys init` would overwrite keys that are already there."""


def _name(common_name: str, org: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_chain(alg: str = "es256", org: str = "assetline development", ca_days: int = 3650, signer_days: int = 825):
    """A new CA and a signing certificate it issued: (ca_cert_pem, ca_key_pem, chain_pem, signer_key_pem).

    The signing certificate carries what C2PA validators check: not a CA,
    digitalSignature key usage, the emailProtection extended key usage, key identifiers.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if alg not in ALGORITHMS:
        raise SigningError("keys", f"unknown algorithm {alg!r} (known: {', '.join(ALGORITHMS)})")
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{org} CA", org)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)  # fmt: skip
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ed25519.Ed25519PrivateKey.generate() if alg == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(f"{org} signer", org)).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=signer_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    private = dict(encoding=pem, format=serialization.PrivateFormat.PKCS8, encryption_algorithm=serialization.NoEncryption())
    ca_pem = ca.public_bytes(pem)
    return ca_pem, ca_key.private_bytes(**private), leaf.public_bytes(pem) + ca_pem, key.private_bytes(**private)


def init_keys(folder: Path | None = None, alg: str = "es256", force: bool = False, org: str = "assetline development") -> Path:
    """Make a development CA and signing certificate in `folder` (default: the keys folder).

    The files appear together or not at all (made in a temporary folder beside
    it, then moved in); private keys get mode 0600, the folder 0700. Without
    `force`, existing keys are an error (`KeysExistError`).
    """
    folder = Path(folder) if folder is not None else keys_dir()
    names = (CA_CERT, CA_KEY, SIGNER_CERT, SIGNER_KEY, TRUST_ANCHORS)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f".{folder.name}.lock"):  # two processes starting at once make one set
        if not force and any((folder / n).exists() for n in names):
            raise KeysExistError(folder, "keys already exist here (--force replaces them; outputs signed with the old "
                                         "key stop verifying unless its CA stays a trust anchor)")  # fmt: skip
        ca_pem, ca_key, chain, key = make_chain(alg, org)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name, data, mode in ((CA_CERT, ca_pem, 0o644), (CA_KEY, ca_key, 0o600), (SIGNER_CERT, chain, 0o644),
                                     (SIGNER_KEY, key, 0o600), (TRUST_ANCHORS, ca_pem, 0o644)):  # fmt: skip
                write_atomically(tmp / name, data, mode)  # exactly `mode`, whatever the umask
            if folder.exists():  # replace file by file: the folder may hold other things
                for name in names:
                    os.replace(tmp / name, folder / name)
            else:
                os.rename(tmp, folder)
            os.chmod(folder, 0o700)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def trust_instructions(folder: Path) -> list[str]:
    """How to make a verifier trust outputs signed with the CA in `folder`."""
    ca = folder / CA_CERT
    here = not settings().trust_anchors and folder.resolve() == keys_dir().resolve()
    return [
        f"CA certificate (public, share it): {ca}",
        f"here, `assetline verify` trusts it ({folder / TRUST_ANCHORS})" if here
        else f"`assetline verify` trusts it once ASSETLINE_KEYS={folder} (or ASSETLINE_TRUST_ANCHORS={ca})",
        f"elsewhere: copy it and set ASSETLINE_TRUST_ANCHORS=/path/to/{CA_CERT} before `assetline verify`, or give it "
        f"to any C2PA validator as a trust anchor (c2pa-python: Context settings trust.trust_anchors; "
        f"c2patool: trust --trust_anchors {CA_CERT})",
    ]
