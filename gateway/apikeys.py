"""Why: API keys are bearer secrets; the gateway stores only their SHA-256 (keys are 192-bit random,
so a fast hash is enough), shows a key once at creation and compares in constant time. This is the
serving path's store (the ORM table, which the migrations describe); what a key is — roles, format,
uses, who may hold which role — is `gateway.apikey_rules`, which the CLI's write path shares.

Key format: `cg_<key id>_<secret>`; the id finds the row, the secret is checked against the hash.
`admin` and `registrar` keys exist only for the operator tenant (ARCHITECTURE.md).

A key may list the uses it may request (`uses`, e.g. txt2img,img2img): the use a request is checked
under is then bound to the key, not the client's word — another use is 403 `use_not_allowed`
(issue #15.2). Keys without a list (every key made before the column existed) keep all uses until
an admin restricts them (`consentgate apikey restrict`, `PATCH /v1/apikeys/{id}`).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, select

from gateway.apikey_rules import (
    OPERATOR_ONLY_ROLES,
    ROLES,
    ApiKeyInfo,
    Principal,
    check_new_key,
    hash_secret,
    key_info,
    new_key,
    require_role,
    require_use,
    split_uses,
    stored_uses,
)
from gateway.errors import NotFound, NotReady, Unauthorized

__all__ = ["OPERATOR_ONLY_ROLES", "ROLES", "ApiKeyInfo", "ApiKeyRow", "ApiKeyStore", "Principal", "require_role",
           "require_use"]


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


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return key_info(row.id, row.tenant, row.role, row.name, row.created_at, row.revoked_at, row.uses)


class ApiKeyStore:
    def __init__(self, engine: Engine, operator_tenant: str = "operator"):
        self.engine = engine
        self.operator_tenant = operator_tenant

    def create(self, tenant: str, role: str, name: str = "",
               uses: Sequence[str] | None = None) -> tuple[ApiKeyInfo, str]:
        check_new_key(tenant, role, self.operator_tenant)
        uses_column = stored_uses(uses)
        key = new_key()
        row = ApiKeyRow(id=key.key_id, tenant=tenant, role=role, secret_sha256=key.secret_sha256, name=name,
                        created_at=datetime.now(UTC), uses=uses_column)
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            info = _info(row)
        return info, key.presented

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
        stored = stored_uses(uses)
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
        expected = row.secret_sha256 if row is not None else hash_secret("\0")
        ok = hmac.compare_digest(expected, hash_secret(secret))
        if row is None or not ok:
            raise Unauthorized("unknown API key")
        if row.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        return Principal(row.id, row.tenant, row.role, split_uses(row.uses))

