"""Why: checkpoints must be checkable by anyone holding only the public key, in a format other
transparency tooling already reads: C2SP `tlog-checkpoint` bodies signed as C2SP `signed-note`s
with Ed25519, and verifier keys as C2SP vkey strings.

    body      = "<origin>\\n<tree size>\\n<base64 root hash>\\n"
    note      = body + "\\n" + "— <key name> <base64(key hash[4] || signature[64])>\\n"
    key hash  = SHA-256(<key name> || 0x0A || 0x01 || public key)[:4]
    vkey      = "<key name>+<hex key hash>+<base64(0x01 || public key)>"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import AuditConfigError, ProofError

ED25519 = 0x01
_VKEY = re.compile(r"^[^+\s]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+$")
SIG_PREFIX = "\u2014 "


def _check_name(name: str) -> str:
    if not name or any(c.isspace() for c in name) or "+" in name or not name.isprintable():
        raise AuditConfigError(f"key name {name!r} must be non-empty, printable, without spaces or '+'")
    return name


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash a signature line carries to say which key made it."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The signed text of a checkpoint (C2SP tlog-checkpoint, no extension lines)."""
    if "\n" in origin or not origin:
        raise AuditConfigError("origin must be a non-empty single line")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 public key and the name its signature lines carry."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise AuditConfigError("a vkey is <name>+<hex key hash>+<base64 key>")
        name, hash_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            expected = bytes.fromhex(hash_hex)
        except (binascii.Error, ValueError) as exc:
            raise AuditConfigError(f"malformed vkey: {exc}") from exc
        if len(raw) != 33 or raw[0] != ED25519:
            raise AuditConfigError("vkey is not an Ed25519 key")
        key = cls(_check_name(name), raw[1:])
        if key.key_hash != expected:
            raise AuditConfigError("vkey key hash does not match its key")
        return key

    def verify_note(self, note: str) -> str:
        """Return the note's body if it carries a valid signature by this key, else raise ProofError."""
        body, sep, sigs = note.partition("\n\n")
        if not sep or not sigs.endswith("\n"):
            raise ProofError("not a signed note: no blank line before signatures")
        body += "\n"
        public = Ed25519PublicKey.from_public_bytes(self.public_key)
        for line in sigs[:-1].split("\n"):
            if not line.startswith(SIG_PREFIX):
                raise ProofError("malformed signature line")
            name, _, encoded = line[len(SIG_PREFIX):].partition(" ")
            if name != self.name:
                continue
            try:
                raw = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ProofError("malformed signature encoding") from exc
            if len(raw) != 68 or raw[:4] != self.key_hash:
                continue
            try:
                public.verify(raw[4:], body.encode())
            except InvalidSignature as exc:
                raise ProofError(f"bad signature by {self.name}") from exc
            return body
        raise ProofError(f"note carries no signature by key {self.name}+{self.key_hash.hex()}")



@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: origin, size and root hash, with the signed note that carries them."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str

    def as_dict(self) -> dict[str, object]:
        """The form records and the API carry: {tree_size, root_hash (hex), note}."""
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(), "note": self.note}


def parse_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """Verify a signed checkpoint note with `key` and read its body; raises ProofError."""
    body = key.verify_note(note)
    lines = body.split("\n")
    if len(lines) < 4:
        raise ProofError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise ProofError(f"bad tree size {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise ProofError("bad root hash encoding") from exc
    if len(root) != 32:
        raise ProofError("root hash must be 32 bytes")
    return Checkpoint(origin, int(size_text), root, note)


class CheckpointSigner:
    """Signs checkpoint bodies. Wraps a local Ed25519 key, or any callable (e.g. a KMS) that returns
    Ed25519 signatures for the given public key."""

    def __init__(self, name: str, public_key: bytes, sign: Callable[[bytes], bytes]) -> None:
        if len(public_key) != 32:
            raise AuditConfigError("an Ed25519 public key is 32 bytes")
        self.verifier = VerifierKey(_check_name(name), bytes(public_key))
        self._sign = sign

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey, name: str) -> CheckpointSigner:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, raw, key.sign)

    @classmethod
    def generate(cls, name: str) -> CheckpointSigner:
        """A signer with a fresh in-memory key (tests, development)."""
        return cls.from_private_key(Ed25519PrivateKey.generate(), name)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def public_key_bytes(self) -> bytes:
        return self.verifier.public_key

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign_note(self, body: str) -> str:
        signature = self._sign(body.encode())
        if len(signature) != 64:
            raise AuditConfigError("signer returned a signature that is not Ed25519-sized")
        encoded = base64.b64encode(self.verifier.key_hash + signature).decode()
        return f"{body}\n{SIG_PREFIX}{self.name} {encoded}\n"

    def sign_checkpoint(self, origin: str, size: int, root: bytes) -> Checkpoint:
        return Checkpoint(origin, size, root, self.sign_note(checkpoint_body(origin, size, root)))


def generate_signing_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> bytes:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and return its raw public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(target, 0o600)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_signer(path: str | os.PathLike[str], origin: str) -> CheckpointSigner:
    """The checkpoint signer for `origin` from a key file written by `generate_signing_key`."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditConfigError(f"{path} does not hold an Ed25519 private key")
    return CheckpointSigner.from_private_key(key, origin)


PublicKeyLike = VerifierKey | CheckpointSigner | Ed25519PublicKey | bytes | str | os.PathLike[str]


def verifier_key(value: PublicKeyLike, name: str | None = None) -> VerifierKey:
    """Read a verifier key from a vkey string, raw 32 bytes, a hex/base64 string, a public key
    object, a signer, or a file holding any of those or a PEM (public or private) key.

    `name` is the key name to use when the input carries none (usually the log's origin).
    """
    if isinstance(value, VerifierKey):
        return value
    if isinstance(value, CheckpointSigner):
        return value.verifier
    if isinstance(value, Ed25519PublicKey):
        raw = value.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return _named(raw, name)
    if isinstance(value, bytes):
        if len(value) == 32:
            return _named(value, name)
        return verifier_key(value.decode("utf-8", "replace"), name)
    if isinstance(value, os.PathLike):
        return verifier_key(Path(value).read_bytes(), name)
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return _from_pem(text.encode(), name)
    if _VKEY.match(text):
        return VerifierKey.from_vkey(text)
    if len(text) == 64:
        try:
            return _named(bytes.fromhex(text), name)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) == 32:
        return _named(raw, name)
    if len(text) < 4096 and Path(text).is_file():
        return verifier_key(Path(text).read_bytes(), name)
    raise AuditConfigError("unrecognised public key: give a vkey, a PEM file, or 32 raw bytes")


def _named(raw: bytes, name: str | None) -> VerifierKey:
    if name is None:
        raise AuditConfigError("a raw public key needs a key name (the log origin)")
    if len(raw) != 32:
        raise AuditConfigError("an Ed25519 public key is 32 bytes")
    return VerifierKey(_check_name(name), raw)


def _from_pem(pem: bytes, name: str | None) -> VerifierKey:
    loaded: object
    if b"PRIVATE KEY" in pem:
        private = serialization.load_pem_private_key(pem, password=None)
        loaded = private.public_key()
    else:
        loaded = serialization.load_pem_public_key(pem)
    if not isinstance(loaded, Ed25519PublicKey):
        raise AuditConfigError("PEM key is not Ed25519")
    return verifier_key(loaded, name)


def checkpoint_note_from(text: str) -> str:
    """The signed note in a saved checkpoint: the note text itself, or JSON carrying it as `note`
    (the shape of `GET /v1/audit/checkpoint`) or as `checkpoint.note` (a receipt). Not verified
    here: pass the result to `parse_checkpoint`. Raises ProofError when no note is found."""
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return text
    try:
        data = json.loads(stripped)
    except ValueError as exc:
        raise ProofError(f"checkpoint file is not JSON nor a signed note: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("checkpoint"), dict):
        data = data["checkpoint"]
    note = data.get("note") if isinstance(data, dict) else None
    if not isinstance(note, str):
        raise ProofError("checkpoint JSON carries no `note` string")
    return note


def tree_size_of(note: str) -> int:
    """The tree size line of a checkpoint note, unverified (ordering published files only)."""
    lines = note.split("\n")
    if len(lines) < 2 or not lines[1].isdigit():
        raise ValueError("not a checkpoint note")
    return int(lines[1])
