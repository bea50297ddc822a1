"""Why: what an API key is — its roles, its format, which tenant may hold which role, the uses it may
request and how they are stored — without any database code. The ORM store (`gateway.apikeys`,
the serving path) and the CLI's DB-API/SQLAlchemy Core paths (`gateway.cli.readdb`, `gateway.cli.writedb`:
commands that need no model start in < 0.5 s, #22.6) apply the same rules from here, so a key made by
`consentgate apikey create` and one made by `POST /v1/apikeys` cannot differ.

Key format: `cg_<key id>_<secret>`; the id finds the row, the secret is checked against its SHA-256
(keys are 192-bit random, so a fast hash is enough). `admin` and `registrar` keys exist only for the
operator tenant (ARCHITECTURE.md). A key's `uses` (e.g. txt2img,img2img) bind the use a request is
checked under to the key; NULL in the database: every use.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import Forbidden, Invalid

__all__ = [
    "OPERATOR_ONLY_ROLES",
    "ROLES",
    "ApiKeyInfo",
    "NewKey",
    "Principal",
    "check_new_key",
    "hash_secret",
    "key_info",
    "new_key",
    "require_role",
    "require_use",
    "split_uses",
    "stored_uses",
]

ROLES = ("generator", "registrar", "auditor", "admin")
OPERATOR_ONLY_ROLES = ("admin", "registrar")
_USE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str
    role: str
    uses: tuple[str, ...] | None = None  # None: every use (keys made without a list)

    def is_operator(self, operator_tenant: str) -> bool:
        return self.tenant == operator_tenant

    def may_use(self, use: str) -> bool:
        return self.uses is None or use in self.uses


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is shown of a key (never its hash): `GET /v1/apikeys`, `consentgate apikey list`."""

    id: str
    tenant: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None
    uses: list[str] | None = None


def stored_uses(uses: Sequence[str] | None) -> str | None:
    """Validated, de-duplicated uses as stored (comma-separated); None keeps every use."""
    if uses is None:
        return None
    cleaned = list(dict.fromkeys(u.strip() for u in uses if u.strip()))
    if not cleaned:
        raise Invalid("uses: list at least one use (leave it out for a key that may request every use)")
    bad = [u for u in cleaned if not _USE.match(u)]
    if bad:
        raise Invalid(f"uses: {bad[0][:64]!r} is not a use name (letters, digits, '_', '.', '-')")
    return ",".join(cleaned)


def split_uses(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(u for u in stored.split(",") if u)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_info(
    key_id: str, tenant: str, role: str, name: str, created_at: datetime, revoked_at: datetime | None, uses: str | None
) -> ApiKeyInfo:
    """A stored key's columns as shown. Times are stored in UTC: aware on PostgreSQL, naive on SQLite
    (which keeps no zone); both are shown as aware UTC."""
    split = split_uses(uses)
    return ApiKeyInfo(
        key_id,
        tenant,
        role,
        name,
        _utc(created_at).isoformat(),
        _utc(revoked_at).isoformat() if revoked_at else None,
        list(split) if split is not None else None,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_new_key(tenant: str, role: str, operator_tenant: str) -> None:
    """422 unless ROLE exists, TENANT is a well-formed name and the role may belong to it."""
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if not tenant or len(tenant) > 128 or not all(c.isalnum() or c in "-_." for c in tenant):
        raise Invalid("tenant must be 1-128 characters of letters, digits, '-', '_' or '.'")
    if role in OPERATOR_ONLY_ROLES and tenant != operator_tenant:
        raise Invalid(f"{role} keys exist only for the operator tenant {operator_tenant!r}")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret_sha256: str
    presented: str  # `cg_<id>_<secret>`: shown once, never stored


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return NewKey(key_id, hash_secret(secret), f"cg_{key_id}_{secret}")


def require_use(principal: Principal, use: str) -> None:
    """403 `use_not_allowed` unless the key may request `use`."""
    if not principal.may_use(use):
        allowed = ", ".join(principal.uses or ())
        raise Forbidden(f"this API key may not request use {use!r} (it may request: {allowed})", code="use_not_allowed")


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role == "admin" or principal.role in roles:
        return
    raise Forbidden(f"this endpoint needs a {' or '.join(roles)} key; yours is {principal.role}")
