"""Envelope encryption: roundtrip, AAD binding, tampering, KEK file handling, shredding."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
from gateway.registry.errors import CryptoError, DecryptionError, SubjectKeyExists, SubjectKeyNotFound

pytestmark = pytest.mark.db


def test_roundtrip_and_ciphertext_is_not_plaintext(crypto: SubjectCrypto) -> None:
    crypto.new_subject_key("s1")
    secret = b"template bytes \x00\x01" * 10
    blob = crypto.encrypt("s1", secret, "face_template|dlib|v1")
    assert secret not in blob
    assert crypto.decrypt("s1", blob, "face_template|dlib|v1") == secret
    # fresh nonce each time
    assert crypto.encrypt("s1", secret, "p") != crypto.encrypt("s1", secret, "p")


def test_aad_binds_subject_and_purpose(crypto: SubjectCrypto) -> None:
    crypto.new_subject_key("s1")
    crypto.new_subject_key("s2")
    blob = crypto.encrypt("s1", b"x" * 32, "face_template|dlib|v1")
    with pytest.raises(DecryptionError):
        crypto.decrypt("s1", blob, "enrolment_image")  # same subject, other purpose
    with pytest.raises(DecryptionError):
        crypto.decrypt("s2", blob, "face_template|dlib|v1")  # other subject's key
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        crypto.decrypt("s1", bytes(tampered), "face_template|dlib|v1")
    with pytest.raises(DecryptionError):
        crypto.decrypt("s1", b"\x02" + blob[1:], "face_template|dlib|v1")


def test_wrapped_key_is_bound_to_its_subject(crypto: SubjectCrypto) -> None:
    """Copying s1's wrapped key into s2's row must not hand s2's data to s1's key."""
    crypto.new_subject_key("s1")
    wrapped = crypto.keystore.get("s1")
    crypto.keystore.put("s2", wrapped, "copied")
    with pytest.raises(DecryptionError):
        crypto.encrypt("s2", b"data", "p")


def test_key_per_subject_once(crypto: SubjectCrypto) -> None:
    crypto.new_subject_key("s1")
    with pytest.raises(SubjectKeyExists):
        crypto.new_subject_key("s1")


def test_shred_makes_data_undecryptable(crypto: SubjectCrypto) -> None:
    crypto.new_subject_key("s1")
    blob = crypto.encrypt("s1", b"secret", "p")
    assert crypto.shred("s1") is True
    assert crypto.shred("s1") is False
    with pytest.raises(SubjectKeyNotFound):
        crypto.decrypt("s1", blob, "p")
    # a new key under the same id is a different key
    crypto.new_subject_key("s1")
    with pytest.raises(DecryptionError):
        crypto.decrypt("s1", blob, "p")


def test_other_kek_cannot_unwrap(crypto: SubjectCrypto, tmp_path: Path) -> None:
    crypto.new_subject_key("s1")
    other = SubjectCrypto(FileKek.create(tmp_path / "other.key"), crypto.keystore)
    with pytest.raises(DecryptionError):
        other.encrypt("s1", b"data", "p")


def test_file_kek_create_is_idempotent_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kek.key"
    first = FileKek.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    second = FileKek.create(path)
    assert second.key_id == first.key_id
    assert "key" not in repr(first).replace("key_id", "").replace("kek.key", "")
    dek = b"k" * 32
    assert second.unwrap(first.wrap(dek, b"aad"), b"aad") == dek
    (tmp_path / "short.key").write_bytes(b"short")
    with pytest.raises(CryptoError, match="exactly 32 bytes"):
        FileKek(tmp_path / "short.key")
    with pytest.raises(CryptoError, match="cannot read"):
        FileKek(tmp_path / "missing.key")


def test_sqlite_keystore_forgets_the_bytes(tmp_path: Path) -> None:
    """After delete, the wrapped key is not left in the SQLite file (secure_delete + checkpoint)."""
    db = tmp_path / "keys.db"
    store = KeyStore(sa.create_engine(f"sqlite:///{db}"))
    store.create_tables()
    crypto = SubjectCrypto(FileKek.create(tmp_path / "kek.key"), store)
    for i in range(20):
        crypto.new_subject_key(f"s{i}")
    wrapped = store.get("s7")
    assert wrapped in db.read_bytes()
    assert store.delete("s7")
    store.engine.dispose()
    assert wrapped not in db.read_bytes()
    assert "s7" not in store.subject_ids() and len(store.subject_ids()) == 19
