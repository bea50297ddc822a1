"""Why: biometric templates must be useless to anyone holding a copy of the data once a subject is erased.

The sealing itself (AES-256-GCM, the KEK, `SubjectCrypto`) is in `gateway.registry.envelope`, which imports no
database code; this module adds the SQL key store and re-exports the rest.

Envelope encryption: each subject has a random 256-bit data key (DEK); its data is sealed with AES-256-GCM
under that DEK with AAD binding the ciphertext to the subject id and the row's purpose (so a ciphertext copied
to another subject or another column does not open). DEKs are stored only wrapped by a key-encryption key
(KEK) — a file by default, a KMS behind the same Protocol — in a key store with its *own* database. Erasure
deletes the wrapped DEK (crypto-shredding): a backup of the main database alone can no longer be opened.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.registry.envelope import KEY_BYTES, FileKek, KeyEncryptionKey, SubjectCrypto, WrappedKeys
from gateway.registry.errors import RegistryUnavailable, SubjectKeyExists, SubjectKeyNotFound

__all__ = ["KEYSTORE_METADATA", "KEY_BYTES", "FileKek", "KeyEncryptionKey", "KeyStore", "SubjectCrypto",
           "WrappedKeys", "keystore_subject_keys"]

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
