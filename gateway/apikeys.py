"""Why: API keys are bearer secrets; the gateway stores only their SHA-256 (keys are 192-bit random,
so a fast hash is enough), shows a key once at creation and compares in constant time.

Key format: `cg_<key id>_<secret>`; the id finds the row, the secret is checked against the hash.
`admin` and `registrar` keys exist only for the operator tenant (ARCHITECTURE.md).

A key may list the uses it may request (`uses`, e.g. txt2img,img2img): the use a request is checked
under is then bound to the key, not the client's word — another use is 403 `use_not_allowed`
(issue #15.2). Keys without a list (every key made before the column existed) keep all uses until
an admin restricts them (`consentgate apikey restrict`, `PATCH /v1/apikeys/{id}`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, select

from gateway.errors import Forbidden, Invalid, NotFound, NotReady, Unauthorized

ROLES = ("generator", "registrar", "auditor", "admin")
OPERATOR_ONLY_ROLES = ("admin", "registrar")
_USE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "apikeys"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    role: str
    secret_sha256: str
    name: str = ""
    created_at: datetime
    revoked_at: datetime | None = None
    uses: str | None = None  # comma-separated uses this key may request; NULL: every use


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
    id: str
    tenant: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None
    uses: list[str] | None = None


def _uses(uses: Sequence[str] | None) -> str | None:
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


def _split(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(u for u in stored.split(",") if u)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    uses = _split(row.uses)
    return ApiKeyInfo(row.id, row.tenant, row.role, row.name, row.created_at.isoformat(),
                      row.revoked_at.isoformat() if row.revoked_at else None,
                      list(uses) if uses is not None else None)


class ApiKeyStore:
    def __init__(self, engine: Engine, operator_tenant: str = "operator"):
        self.engine = engine
        self.operator_tenant = operator_tenant

    def create(self, tenant: str, role: str, name: str = "",
               uses: Sequence[str] | None = None) -> tuple[ApiKeyInfo, str]:
        if role not in ROLES:
            raise Invalid(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not tenant or len(tenant) > 128 or not all(c.isalnum() or c in "-_." for c in tenant):
            raise Invalid("tenant must be 1-128 characters of letters, digits, '-', '_' or '.'")
        if role in OPERATOR_ONLY_ROLES and tenant != self.operator_tenant:
            raise Invalid(f"{role} keys exist only for the operator tenant {self.operator_tenant!r}")
        stored_uses = _uses(uses)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        row = ApiKeyRow(id=key_id, tenant=tenant, role=role, secret_sha256=_hash(secret), name=name,
                        created_at=datetime.now(UTC), uses=stored_uses)
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            info = _info(row)
        return info, f"cg_{key_id}_{secret}"

    def list(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        with Session(self.engine) as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)  # type: ignore[arg-type]
            if tenant:
                query = query.where(ApiKeyRow.tenant == tenant)
            return [_info(r) for r in session.exec(query)]

    def revoke(self, key_id: str) -> ApiKeyInfo:
        if "\0" in key_id:
            raise NotFound(f"no API key {key_id!r}")
        with Session(self.engine) as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                session.add(row)
                session.commit()
                session.refresh(row)
            return _info(row)

    def restrict(self, key_id: str, uses: Sequence[str] | None) -> ApiKeyInfo:
        """Set the uses a key may request (None: every use again). Applies at the key's next request."""
        stored = _uses(uses)
        if "\0" in key_id:
            raise NotFound(f"no API key {key_id!r}")
        with Session(self.engine) as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            row.uses = stored
            session.add(row)
            session.commit()
            session.refresh(row)
            return _info(row)

    def authenticate(self, presented: str) -> Principal:
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "cg":
            raise Unauthorized("malformed API key")
        _, key_id, secret = parts
        if len(key_id) != 12 or not all(c in "0123456789abcdef" for c in key_id):
            raise Unauthorized("unknown API key")
        try:
            with Session(self.engine) as session:
                row = session.get(ApiKeyRow, key_id)
        except SQLAlchemyError:
            raise NotReady("the key store (database) is unreachable") from None
        expected = row.secret_sha256 if row is not None else _hash("\0")
        ok = hmac.compare_digest(expected, _hash(secret))
        if row is None or not ok:
            raise Unauthorized("unknown API key")
        if row.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        return Principal(row.id, row.tenant, row.role, _split(row.uses))


def require_use(principal: Principal, use: str) -> None:
    """403 `use_not_allowed` unless the key may request `use`."""
    if not principal.may_use(use):
        allowed = ", ".join(principal.uses or ())
        raise Forbidden(f"this API key may not request use {use!r} (it may request: {allowed})",
                        code="use_not_allowed")


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role == "admin" or principal.role in roles:
        return
    raise Forbidden(f"this endpoint needs a {' or '.join(roles)} key; yours is {principal.role}")
