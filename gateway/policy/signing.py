"""Why: when a trust key is configured, only a policy bundle signed by the holder of the matching
private key may go live. The signature is a detached Ed25519 signature over the ASCII text
`consentgate-policy-bundle:v1:<digest>` in `policies/bundle.sig` (base64). A *missing* signature
is refused exactly like a bad one (OPA's lesson: test the absence as carefully as the forgery)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.policy.errors import PolicyError
from gateway.policy.files import bundle_digest

SIG_FILE = "bundle.sig"


def message(digest: str) -> bytes:
    return f"consentgate-policy-bundle:v1:{digest}".encode()


def generate_keypair(private_path: Path, public_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))


def sign_bundle(directory: Path, private_key_path: Path) -> Path:
    key = serialization.load_pem_private_key(private_key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyError([f"{private_key_path}: not an Ed25519 private key"])
    digest = bundle_digest(directory)
    out = directory / SIG_FILE
    out.write_text(base64.b64encode(key.sign(message(digest))).decode() + "\n")
    return out


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PolicyError([f"{path}: cannot load the policy trust key: {exc}"]) from None
    if not isinstance(key, Ed25519PublicKey):
        raise PolicyError([f"{path}: the policy trust key is not an Ed25519 public key"])
    return key


def verifier(trust_key_path: Path):  # type: ignore[no-untyped-def]
    """A signature check for PolicyManager: raises PolicyError unless bundle.sig verifies."""

    def check(directory: Path, digest: str) -> None:
        public = load_public_key(trust_key_path)
        sig_path = directory / SIG_FILE
        if not sig_path.is_file():
            raise PolicyError([f"{sig_path}: missing; a trust key is configured, so the bundle must be signed "
                               "(consentgate policy sign)"])
        try:
            signature = base64.b64decode(sig_path.read_text().strip(), validate=True)
            public.verify(signature, message(digest))
        except (InvalidSignature, ValueError):
            raise PolicyError([f"{sig_path}: the signature does not match this bundle (digest {digest[:16]}…)"]) \
                from None

    return check
