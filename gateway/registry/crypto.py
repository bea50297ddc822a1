"""Why: biometric templates must be useless to anyone holding a copy of the data once a subject is erased.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from gateway.registry.errors import (
    CryptoError,
    DecryptionError,
    RegistryUnavailable,
    SubjectKeyExists,
    SubjectKeyNotFound,
)

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


# The key store lives in its own database, so its table is on its own MetaData (never in SQLModel.metadata,
# which describes the main database and feeds its migrations).
KEYSTORE_METADATA = sa.MetaData()
keystore_subject_keys = sa.Table(
    "keystore_subject_keys",
    KEYSTORE_METADATA,
    sa.Column("subject_id", sa.String(64), primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("kek_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class KeyStore:
    """Wrapped subject keys, one row per subject, in a database separate from the template data."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        KEYSTORE_METADATA.create_all(self.engine)

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None:
        row = {
            "subject_id": subject_id,
            "wrapped_key": wrapped,
            "kek_id": kek_id,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(keystore_subject_keys.insert().values(**row))
        except sa.exc.IntegrityError as exc:
            raise SubjectKeyExists(subject_id) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc

    def get(self, subject_id: str) -> bytes:
        try:
            with self.engine.connect() as conn:
                wrapped = conn.execute(
                    sa.select(keystore_subject_keys.c.wrapped_key).where(
                        keystore_subject_keys.c.subject_id == subject_id
                    )
                ).scalar_one_or_none()
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc
        if wrapped is None:
            raise SubjectKeyNotFound(subject_id)
        return bytes(wrapped)

    def subject_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(keystore_subject_keys.c.subject_id)).scalars())

    def delete(self, subject_id: str) -> bool:
        """Destroy the subject's wrapped key; True if one existed. On SQLite the freed page is zeroed
        (secure_delete) and the WAL checkpointed, so the bytes do not linger in the file."""
        sqlite = self.engine.dialect.name == "sqlite"
        try:
            with self.engine.begin() as conn:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA secure_delete=ON")
                n = conn.execute(
                    keystore_subject_keys.delete().where(keystore_subject_keys.c.subject_id == subject_id)
                ).rowcount
            if sqlite:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc
        return bool(n)


def _key_aad(subject_id: str) -> bytes:
    return b"consentgate/v1/subject-key|" + subject_id.encode()


def _data_aad(subject_id: str, purpose: str) -> bytes:
    return b"consentgate/v1/data|" + subject_id.encode() + b"|" + purpose.encode()


class SubjectCrypto:
    """Per-subject envelope encryption: `encrypt(subject_id, plaintext, purpose)` and back."""

    def __init__(self, kek: KeyEncryptionKey, keystore: KeyStore) -> None:
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
