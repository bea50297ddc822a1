"""Why: the envelope encryption of the consent registry without any database code, so that a command
which only needs to *open* what the registry sealed (`consentgate registry subject list` decrypting the
display names) does not import SQLAlchemy: scripts call the CLI in loops and the start-up budget is
0.5 s (#22.6). `gateway.registry.crypto` re-exports all of this beside the SQL key store.

Envelope encryption: each subject has a random 256-bit data key (DEK); its data is sealed with AES-256-GCM
under that DEK with AAD binding the ciphertext to the subject id and the row's purpose (so a ciphertext copied
to another subject or another column does not open). DEKs are stored only wrapped by a key-encryption key
(KEK) — a file by default, a KMS behind the same Protocol — in a key store with its *own* database. Erasure
deletes the wrapped DEK (crypto-shredding): a backup of the main database alone can no longer be opened.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.registry.errors import CryptoError, DecryptionError

__all__ = ["KEY_BYTES", "PROFILE", "FileKek", "KeyEncryptionKey", "SubjectCrypto", "WrappedKeys"]

PROFILE = "profile"  # the purpose (AAD) of a subject's sealed {display_name, aliases}

_FORMAT = b"\x01"  # version byte in front of every sealed blob: 0x01 || nonce(12) || ciphertext+tag
_NONCE = 12
KEY_BYTES = 32


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _FORMAT:
        raise DecryptionError("not a consentgate ciphertext (bad format byte or too short)")
    try:
        return AESGCM(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], aad)
    except InvalidTag:
        raise DecryptionError(
            "authentication failed: wrong key, subject/purpose binding, or tampered data"
        ) from None


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys. A KMS client implements the same two calls; `key_id` names the KEK
    so a rotation can tell which rows still use the old one."""

    key_id: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


class FileKek:
    """A 32-byte AES-256 key in a 0600 file (written by `consentgate init`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            key = self.path.read_bytes()
        except OSError as exc:
            raise CryptoError(f"cannot read key-encryption key {self.path}: {exc.strerror}") from exc
        if len(key) != KEY_BYTES:
            raise CryptoError(f"key-encryption key {self.path} must hold exactly {KEY_BYTES} bytes")
        self._key = key
        # a non-secret fingerprint, so rows can record which KEK wrapped them (rotation)
        self.key_id = "file:" + hmac.new(key, b"consentgate/kek-id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def create(cls, path: str | Path) -> FileKek:
        """Create the key file (mode 0600) unless it exists; either way return the KEK in it."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(p)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        return cls(p)

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        return _seal(self._key, dek, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return _open(self._key, wrapped, aad)

    def __repr__(self) -> str:  # never show key material
        return f"FileKek(path={str(self.path)!r}, key_id={self.key_id!r})"


@runtime_checkable
class WrappedKeys(Protocol):
    """Where the wrapped subject keys live: `gateway.registry.crypto.KeyStore` (SQL, its own database),
    or a read-only reader (the CLI's list commands). `get` raises SubjectKeyNotFound for an unknown
    (or erased) subject."""

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None: ...

    def get(self, subject_id: str) -> bytes: ...

    def delete(self, subject_id: str) -> bool: ...

    def subject_ids(self) -> list[str]: ...


def _key_aad(subject_id: str) -> bytes:
    return b"consentgate/v1/subject-key|" + subject_id.encode()


def _data_aad(subject_id: str, purpose: str) -> bytes:
    return b"consentgate/v1/data|" + subject_id.encode() + b"|" + purpose.encode()


class SubjectCrypto:
    """Per-subject envelope encryption: `encrypt(subject_id, plaintext, purpose)` and back."""

    def __init__(self, kek: KeyEncryptionKey, keystore: WrappedKeys) -> None:
        self.kek = kek
        self.keystore = keystore

    def new_subject_key(self, subject_id: str) -> None:
        dek = secrets.token_bytes(KEY_BYTES)
        self.keystore.put(subject_id, self.kek.wrap(dek, _key_aad(subject_id)), self.kek.key_id)

    def _dek(self, subject_id: str) -> bytes:
        try:
            return self.kek.unwrap(self.keystore.get(subject_id), _key_aad(subject_id))
        except DecryptionError as exc:
            raise DecryptionError(f"cannot unwrap the data key of subject {subject_id!r}") from exc

    def encrypt(self, subject_id: str, plaintext: bytes, purpose: str) -> bytes:
        return _seal(self._dek(subject_id), plaintext, _data_aad(subject_id, purpose))

    def decrypt(self, subject_id: str, blob: bytes, purpose: str) -> bytes:
        return _open(self._dek(subject_id), blob, _data_aad(subject_id, purpose))

    def decrypt_many(self, subject_id: str, blobs: list[bytes], purpose: str) -> list[bytes]:
        """Unwraps the subject key once for several blobs of the same purpose."""
        dek = self._dek(subject_id)
        aad = _data_aad(subject_id, purpose)
        return [_open(dek, b, aad) for b in blobs]

    def shred(self, subject_id: str) -> bool:
        """Destroy the subject's key: everything sealed under it becomes undecryptable."""
        return self.keystore.delete(subject_id)
