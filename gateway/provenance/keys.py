"""Development PKI for C2PA signing: a root CA and a signing certificate c2pa accepts.

Why: c2pa-rs refuses self-signed signing certificates and wants an end-entity certificate
with KeyUsage digitalSignature, an accepted EKU (we use emailProtection) and an Authority Key
Identifier. ``consentgate keys init`` calls ``init_dev_pki`` so a fresh install can sign and
verify its own output (the root goes into the verifier's trust anchors: ``Trusted``).
Production deployments bring their own certificate chain and key files (or a KMS).

Idempotent: existing files are kept (never overwritten); private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.provenance.errors import PkiError

__all__ = ["Alg", "PkiPaths", "init_dev_pki", "load_private_key_alg"]

Alg = Literal["es256", "ed25519"]
_PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

ROOT_CERT = "c2pa-root.pem"
ROOT_KEY = "c2pa-root.key"
SIGNING_CHAIN = "c2pa-signing-chain.pem"
SIGNING_KEY = "c2pa-signing.key"


@dataclass(frozen=True)
class PkiPaths:
    root_cert: Path
    signing_cert_chain: Path  # PEM: signing certificate first, then the root
    signing_key: Path  # PEM PKCS#8, mode 0600
    root_key: Path
    alg: Alg


def _new_key(alg: Alg) -> _PrivateKey:
    if alg == "es256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise PkiError(f"unsupported signing algorithm {alg!r} (es256 or ed25519)")


def _hash_for(alg: Alg) -> hashes.SHA256 | None:
    return hashes.SHA256() if alg == "es256" else None  # Ed25519 signs without a separate hash


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """CA: keyCertSign + cRLSign. End entity: digitalSignature only."""
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def load_private_key_alg(path: Path) -> Alg:
    """Which of our algorithms a PEM private key file uses."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read private key {path}: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "es256"
    raise PkiError(f"{path}: unsupported key type {type(key).__name__}")


def _write_private(path: Path, key: _PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)


def init_dev_pki(directory: Path, *, alg: Alg = "es256", org: str = "consentgate development",
                 days: int = 3650) -> PkiPaths:
    """Create (once) a development root CA and a C2PA signing certificate under ``directory``."""
    directory = Path(directory)
    paths = PkiPaths(directory / ROOT_CERT, directory / SIGNING_CHAIN, directory / SIGNING_KEY,
                     directory / ROOT_KEY, alg)
    existing = [p for p in (paths.root_cert, paths.signing_cert_chain, paths.signing_key, paths.root_key)
                if p.exists()]
    if len(existing) == 4:
        found = load_private_key_alg(paths.signing_key)
        if found != alg:
            raise PkiError(f"{directory} already holds a {found} signing key (asked for {alg})")
        return paths
    if existing:
        raise PkiError(f"{directory} holds a partial PKI ({', '.join(p.name for p in existing)}); "
                       "remove it or complete it by hand")
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)

    root_key = _new_key(alg)
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                           x509.NameAttribute(NameOID.COMMON_NAME, f"{org} C2PA root")])
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, _hash_for(alg))
    )

    leaf_key = _new_key(alg)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                           x509.NameAttribute(NameOID.COMMON_NAME, f"{org} C2PA signer")])
    leaf = (
        x509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                       critical=False)
        .sign(root_key, _hash_for(alg))
    )

    pem = serialization.Encoding.PEM
    _write_private(paths.root_key, root_key)
    _write_private(paths.signing_key, leaf_key)
    paths.signing_cert_chain.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    paths.root_cert.write_bytes(root.public_bytes(pem))  # written last: its presence marks completion
    return paths
