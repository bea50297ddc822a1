"""Console sessions (gateway/sessions.py) on SQLite and PostgreSQL: a key is exchanged for a
session that ends on idle, on absolute expiry, on logout and when its key is revoked; only the
token's hash is stored; generator keys cannot sign in."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.apikeys import ApiKeyStore
from gateway.db import make_engine
from gateway.errors import Forbidden, Unauthorized
from gateway.migrations import upgrade_head
from gateway.sessions import SessionStore, sessions_table
from tests.support.gateway import database_url

pytestmark = pytest.mark.db
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SessionStore, ApiKeyStore]:
    url = database_url(tmp_path) or f"sqlite:///{tmp_path / 'main.db'}"
    upgrade_head(url)  # the table comes from the migration only
    engine = make_engine(url)
    return SessionStore(engine, idle_s=600, max_s=3600, touch_every_s=60), ApiKeyStore(engine)


def test_create_resolve_and_only_the_hash_is_stored(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    principal = keys.authenticate(keys.create("operator", "auditor")[1])
    token, made = sessions.create(principal, now=T0)
    found = sessions.resolve(token, now=T0 + timedelta(seconds=5))
    assert found.principal == principal and found.csrf == made.csrf
    with sessions.engine.connect() as conn:
        stored = conn.execute(sa.select(sessions_table.c.token_sha256)).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()] and token not in stored
    with pytest.raises(Unauthorized):
        sessions.resolve(token + "x", now=T0)


def test_idle_expiry(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    token, _ = sessions.create(keys.authenticate(keys.create("operator", "admin")[1]), now=T0)
    sessions.resolve(token, now=T0 + timedelta(seconds=590))  # used: the idle clock restarts
    sessions.resolve(token, now=T0 + timedelta(seconds=1150))
    with pytest.raises(Unauthorized) as ended:
        sessions.resolve(token, now=T0 + timedelta(seconds=1150 + 601))
    assert ended.value.code == "session_expired"
    with pytest.raises(Unauthorized):  # and it is gone for good
        sessions.resolve(token, now=T0 + timedelta(seconds=1160))


def test_absolute_expiry_whatever_the_use(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    token, made = sessions.create(keys.authenticate(keys.create("operator", "registrar")[1]), now=T0)
    assert made.expires_at == T0 + timedelta(seconds=3600)
    for minute in range(0, 60, 5):
        sessions.resolve(token, now=T0 + timedelta(minutes=minute))
    with pytest.raises(Unauthorized):
        sessions.resolve(token, now=T0 + timedelta(seconds=3600))


def test_revoked_key_ends_its_sessions(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    info, key = keys.create("acme", "auditor")
    token, _ = sessions.create(keys.authenticate(key), now=T0)
    keys.revoke(info.id)
    with pytest.raises(Unauthorized):
        sessions.resolve(token, now=T0 + timedelta(seconds=1))


def test_logout_and_purge(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    principal = keys.authenticate(keys.create("operator", "auditor")[1])
    token, _ = sessions.create(principal, now=T0)
    old, _ = sessions.create(principal, now=T0 - timedelta(hours=2))
    assert sessions.delete(token) and not sessions.delete(token)
    with pytest.raises(Unauthorized):
        sessions.resolve(token, now=T0)
    assert sessions.purge(now=T0) == 1
    with pytest.raises(Unauthorized):
        sessions.resolve(old, now=T0 - timedelta(hours=1, minutes=59))
    stale, _ = sessions.create(principal, now=T0)
    sessions.create(principal, now=T0 + timedelta(hours=2))  # a sign-in sweeps sessions past their expiry
    with sessions.engine.connect() as conn:
        left = conn.execute(sa.select(sessions_table.c.token_sha256)).scalars().all()
    assert hashlib.sha256(stale.encode()).hexdigest() not in left and len(left) == 1


def test_generator_keys_cannot_sign_in(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    with pytest.raises(Forbidden) as refused:
        sessions.create(keys.authenticate(keys.create("acme", "generator")[1]))
    assert refused.value.code == "role_not_allowed"


def test_csrf_check(stores: tuple[SessionStore, ApiKeyStore]) -> None:
    sessions, keys = stores
    _, made = sessions.create(keys.authenticate(keys.create("operator", "admin")[1]))
    made.check_csrf(made.csrf)
    for wrong in (None, "", made.csrf[:-1], made.csrf + "x"):
        with pytest.raises(Forbidden):
            made.check_csrf(wrong)
