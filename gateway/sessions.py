"""Why: the web console must not keep an API key in the browser. A person signs in once with a key;
the gateway exchanges it for a random session token held in an HttpOnly cookie and remembers,
server-side, whose key it was. The session dies on logout, after `idle_s` without use, after
`max_s` whatever the use, and as soon as its API key is revoked. Every replica sees the same
sessions (they live in the main database), so the console works behind a load balancer.

Only the SHA-256 of the token is stored (the token is 256-bit random, so a fast hash is enough);
the CSRF token that state-changing requests must echo in `X-CSRF-Token` is stored beside it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.apikeys import ApiKeyRow, Principal
from gateway.errors import Forbidden, NotReady, Unauthorized
from gateway.registry.models import RegistryAccessToken
from gateway.settings import Settings

__all__ = ["COOKIE_PLAIN", "COOKIE_SECURE", "SESSION_ROLES", "ConsoleSession", "SessionStore", "session_token",
           "sessions_table", "store_for", "subject_principal"]

# Who may sign in to the console with an API key: generator keys belong in services, not browsers.
SESSION_ROLES = ("auditor", "registrar", "admin")

T = TypeVar("T")
_metadata = sa.MetaData()
sessions_table = sa.Table(
    "console_sessions", _metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(64), nullable=False, index=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("subject_id", sa.String(64)),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class ConsoleSession:
    """A live session: who signed in, the CSRF token, and when it ends (the sooner of the idle and
    absolute expiry)."""

    key_id: str
    tenant: str
    role: str
    subject_id: str | None
    csrf: str
    created_at: datetime
    expires_at: datetime
    idle_expires_at: datetime

    @property
    def principal(self) -> Principal:
        return Principal(self.key_id, self.tenant, self.role)

    @property
    def is_subject(self) -> bool:
        """Signed in with a subject access token: it opens only that person's own pages."""
        return self.subject_id is not None

    def check_csrf(self, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(presented.encode(), self.csrf.encode()):
            raise Forbidden("missing or wrong X-CSRF-Token: reload the console and try again", code="csrf_failed")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)  # SQLite returns naive datetimes


class SessionStore:
    """Console sessions in the main database. `touch_every_s` bounds the writes that keep a busy
    session alive (last use is recorded at most that often)."""

    def __init__(self, engine: Engine, *, idle_s: float = 1800.0, max_s: float = 12 * 3600.0,
                 touch_every_s: float = 30.0):
        self.engine = engine
        self.idle = timedelta(seconds=idle_s)
        self.max = timedelta(seconds=max_s)
        self.touch_every = timedelta(seconds=touch_every_s)

    def create(self, principal: Principal, *, subject_id: str | None = None,
               now: datetime | None = None) -> tuple[str, ConsoleSession]:
        """A new session for `principal`; returns the token (for the cookie, shown nowhere else)."""
        if subject_id is None and principal.role not in SESSION_ROLES:
            raise Forbidden(f"{principal.role} keys cannot sign in to the console; use an auditor, registrar "
                            "or admin key", code="role_not_allowed")
        now = now or datetime.now(UTC)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        row = {"token_sha256": _hash(token), "key_id": principal.key_id, "tenant": principal.tenant,
               "role": principal.role, "subject_id": subject_id, "csrf": csrf, "created_at": now,
               "last_seen_at": now, "expires_at": now + self.max}
        def insert(conn: sa.Connection) -> None:
            # Sessions past their absolute expiry are swept here, so abandoned ones do not pile up.
            conn.execute(sessions_table.delete().where(sessions_table.c.expires_at <= now))
            conn.execute(sessions_table.insert().values(**row))

        self._run(insert)
        return token, self._session(row)

    def resolve(self, token: str, *, now: datetime | None = None) -> ConsoleSession:
        """The live session of `token`, or 401 (unknown, expired, idle too long, key revoked)."""
        now = now or datetime.now(UTC)
        digest = _hash(token)
        t, keys = sessions_table, ApiKeyRow.__table__  # type: ignore[attr-defined]

        def read(conn: sa.Connection) -> ConsoleSession | str:
            row = conn.execute(
                sa.select(t, keys.c.revoked_at).select_from(t.outerjoin(keys, keys.c.id == t.c.key_id))
                .where(t.c.token_sha256 == digest)).mappings().first()
            if row is None:
                return "not signed in (or the session ended): sign in again"
            session = self._session(dict(row))
            revoked = row["revoked_at"] is not None
            if session.subject_id is not None:  # a subject access token's session: the token must still be valid
                tokens = RegistryAccessToken.__table__  # type: ignore[attr-defined]
                expires = conn.execute(sa.select(tokens.c.expires_at).where(
                    tokens.c.id == session.key_id, tokens.c.subject_id == session.subject_id)).scalar()
                revoked = expires is None or _aware(expires) <= now
            if revoked or now >= session.expires_at or now >= session.idle_expires_at:
                conn.execute(t.delete().where(t.c.token_sha256 == digest))
                return "your session ended: sign in again"
            if now - _aware(row["last_seen_at"]) >= self.touch_every:
                conn.execute(t.update().where(t.c.token_sha256 == digest).values(last_seen_at=now))
                session = self._session({**row, "last_seen_at": now})
            return session

        found = self._run(read)
        if isinstance(found, str):
            raise Unauthorized(found, code="session_expired")
        return found

    def delete(self, token: str) -> bool:
        result = self._run(lambda conn: conn.execute(
            sessions_table.delete().where(sessions_table.c.token_sha256 == _hash(token))))
        return bool(result.rowcount)

    def purge(self, *, now: datetime | None = None) -> int:
        """Delete sessions past their absolute expiry (idle ones go when next presented)."""
        cutoff = now or datetime.now(UTC)
        result = self._run(lambda conn: conn.execute(
            sessions_table.delete().where(sessions_table.c.expires_at <= cutoff)))
        return int(result.rowcount or 0)

    def _session(self, row: Mapping[str, Any]) -> ConsoleSession:
        created, expires, last = _aware(row["created_at"]), _aware(row["expires_at"]), _aware(row["last_seen_at"])
        return ConsoleSession(str(row["key_id"]), str(row["tenant"]), str(row["role"]),
                              None if row["subject_id"] is None else str(row["subject_id"]), str(row["csrf"]),
                              created, expires, last + self.idle)

    def _run(self, fn: Callable[[sa.Connection], T]) -> T:
        try:
            with self.engine.begin() as conn:
                return fn(conn)
        except SQLAlchemyError:
            raise NotReady("the session store (database) is unreachable") from None


# The session cookie: `__Host-` prefixed (Secure, Path=/, no Domain) behind TLS, plain over http.
COOKIE_SECURE = "__Host-cg_session"
COOKIE_PLAIN = "cg_session"


def session_token(cookies: dict[str, str]) -> str | None:
    return cookies.get(COOKIE_SECURE) or cookies.get(COOKIE_PLAIN) or None


def subject_principal(token_id: str) -> Principal:
    """The principal a subject-token session is recorded under (role `subject`, no tenant)."""
    return Principal(token_id, "", "subject")


def store_for(engine: Engine, settings: Settings) -> SessionStore:
    return SessionStore(engine, idle_s=settings.console_session_idle_s, max_s=settings.console_session_max_s)
