"""Issue #15.5: the registry fails closed. Before the fix, with the key store's rows gone (a wrong
CONSENTGATE_KEYSTORE_URL, a restored backup) the enrolled subject's templates and name were skipped
("key gone mid-erasure") — the person turned from `no_grant` (deny) into `no_match` (allow) while
/readyz said ready — and the skipped rows were never read again. Now a missing key of a subject that
is not erased, or a key that does not unwrap (wrong KEK), makes the registry unavailable (decisions
deny, `readiness()` → /readyz 503), nothing partial is cached, and nothing is skipped for good."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from gateway.registry.crypto import FileKek, SubjectCrypto, keystore_subject_keys
from gateway.registry.errors import RegistryUnavailable
from tests.registry.test_service import emb, enrolled

pytestmark = pytest.mark.db


def _rows(crypto: SubjectCrypto) -> list[dict[str, Any]]:
    with crypto.keystore.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(keystore_subject_keys))]


def _empty(crypto: SubjectCrypto) -> None:
    with crypto.keystore.engine.begin() as conn:
        conn.execute(keystore_subject_keys.delete())


def _restore(crypto: SubjectCrypto, rows: list[dict[str, Any]]) -> None:
    with crypto.keystore.engine.begin() as conn:
        for row in rows:
            conn.execute(keystore_subject_keys.insert().values(**row))


def test_an_emptied_key_store_makes_the_registry_unavailable_not_empty(make_registry: Any,
                                                                         crypto: SubjectCrypto) -> None:
    writer = make_registry()
    sid = enrolled(writer, 7, "Eileen Collins")
    assert writer.readiness() is None
    saved = _rows(crypto)
    _empty(crypto)  # the key store's rows are gone (a wrong URL, a restored backup)
    replica = make_registry()  # a replica (or a restart) building its indexes now
    with pytest.raises(RegistryUnavailable, match="key store"):
        replica.match_faces("fake", emb(7), 0.9)
    with pytest.raises(RegistryUnavailable):
        replica.match_names("a portrait of Eileen Collins")
    assert "key store" in (replica.readiness() or "")
    _restore(crypto, saved)  # the key store is back: nothing was skipped for good
    assert [[m.subject_id for m in hits] for hits in replica.match_faces("fake", emb(7), 0.9)] == [[sid]]
    assert replica.match_names("a portrait of Eileen Collins") == [(sid, "Eileen Collins")]
    assert replica.readiness() is None


def test_a_key_store_stopped_mid_run_fails_closed_and_recovers(make_registry: Any, crypto: SubjectCrypto,
                                                              tmp_path: Any) -> None:
    reg = make_registry()
    first = enrolled(reg, 3)
    assert [[m.subject_id for m in h] for h in reg.match_faces("fake", emb(3), 0.9)] == [[first]]
    second = enrolled(reg, 5)  # a new enrolment: the next lookup reads (and decrypts) it
    working = crypto.keystore.engine
    crypto.keystore.engine = sa.create_engine(f"sqlite:///{tmp_path / 'gone' / 'keys.db'}")  # stopped
    try:
        with pytest.raises(RegistryUnavailable):
            reg.match_faces("fake", emb(5), 0.9)
        assert reg.readiness() is not None
    finally:
        crypto.keystore.engine = working
    assert [[m.subject_id for m in h] for h in reg.match_faces("fake", emb(5, 3), 0.9)] == [[second], [first]]


def test_a_wrong_kek_makes_the_registry_unavailable(make_registry: Any, crypto: SubjectCrypto, main_engine: Any,
                                                    tmp_path: Any) -> None:
    from classifiers.fake import FakeFaceAnalyzer
    from gateway.registry.service import Registry

    enrolled(make_registry(), 9, "Grace Hopper")
    wrong = SubjectCrypto(FileKek.create(tmp_path / "other-kek.key"), crypto.keystore)
    reg = Registry(main_engine, wrong, {"fake": FakeFaceAnalyzer()})
    try:
        with pytest.raises(RegistryUnavailable, match="key-encryption key"):
            reg.match_faces("fake", emb(9), 0.9)
        assert "key-encryption key" in (reg.readiness() or "")
    finally:
        reg.close()


def test_an_erased_subject_is_not_a_failure(make_registry: Any) -> None:
    writer = make_registry()
    gone = enrolled(writer, 11, "Gone Person")
    kept = enrolled(writer, 12, "Kept Person")
    writer.erase(gone, "registrar")
    replica = make_registry()
    found = replica.match_faces("fake", np.stack([emb(11)[0], emb(12)[0]]), 0.9)
    assert [[m.subject_id for m in h] for h in found] == [[], [kept]]
    assert replica.readiness() is None
