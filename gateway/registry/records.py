"""Why: what a registry change writes — checked text, a grant's terms, UTC timestamps and the consent
ledger's field shapes (SPEC.md §9) — without any database or model code. The registry service
(`admin`) and the CLI's write path (`gateway.cli.writedb`: `registry subject add|grant|revoke` start in
< 0.5 s without the ORM or numpy, #22.6) both build their rows and ledger entries from here, so a grant
made by `consentgate registry grant` and one made by `POST /v1/subjects/{id}/grants` cannot differ in form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.registry.errors import InvalidRequest

__all__ = [
    "MAX_TEXT",
    "GrantTerms",
    "clean_text",
    "grant_ledger_fields",
    "grant_terms",
    "rfc3339",
    "subject_created_fields",
    "subject_names",
    "to_utc",
    "utcnow",
]

MAX_TEXT = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Aware UTC datetime; naive values (SQLite drops the zone) are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return to_utc(value).isoformat().replace("+00:00", "Z")


def clean_text(value: str, what: str) -> str:
    """VALUE stripped; InvalidRequest (422) when empty or longer than MAX_TEXT characters."""
    v = (value or "").strip()
    if not v:
        raise InvalidRequest(f"{what} must not be empty")
    if len(v) > MAX_TEXT:
        raise InvalidRequest(f"{what} is longer than {MAX_TEXT} characters")
    return v


def subject_names(display_name: str, aliases: Sequence[str]) -> tuple[str, list[str]]:
    """A new subject's checked display name and de-duplicated aliases (sealed in its profile)."""
    return clean_text(display_name, "display_name"), list(dict.fromkeys(clean_text(a, "alias") for a in aliases))


@dataclass(frozen=True)
class GrantTerms:
    """A grant's checked terms, as its row stores them (times aware UTC)."""

    grantee_tenant: str
    grantee_end_user: str | None
    uses: list[str]
    valid_from: datetime
    expires_at: datetime | None


def grant_terms(
    grantee_tenant: str,
    grantee_end_user: str | None,
    uses: Sequence[str],
    expires_at: datetime | None,
    valid_from: datetime | None,
    now: datetime,
) -> GrantTerms:
    """The terms of a new grant made at NOW, or InvalidRequest: empty names, no use, an end before the start."""
    tenant = clean_text(grantee_tenant, "grantee_tenant")
    end_user = clean_text(grantee_end_user, "grantee_end_user") if grantee_end_user is not None else None
    use_list = list(dict.fromkeys(clean_text(u, "use") for u in uses))
    if not use_list:
        raise InvalidRequest("a grant must name at least one use")
    start = to_utc(valid_from) if valid_from else now
    end = to_utc(expires_at) if expires_at else None
    if end is not None and end <= start:
        raise InvalidRequest("expires_at must be after valid_from")
    return GrantTerms(tenant, end_user, use_list, start, end)


def grant_ledger_fields(
    grant_id: str,
    grantee_tenant: str,
    end_user_pseudonym: str | None,
    uses: Sequence[str],
    valid_from: datetime,
    expires_at: datetime | None,
) -> dict[str, Any]:
    """A grant as the ledger records it (SPEC.md §9): the grantee end user only as its keyed hash
    (`EndUserPseudonyms.pseudonym` under the grantee tenant's key), like the end users of decisions."""
    return {
        "grant_id": grant_id,
        "grantee_tenant": grantee_tenant,
        "grantee_end_user": end_user_pseudonym,
        "uses": list(uses),
        "valid_from": rfc3339(valid_from),
        "expires_at": rfc3339(expires_at) if expires_at else None,
    }


def subject_created_fields(protected: bool, alias_count: int) -> dict[str, Any]:
    """The ledger fields of a `subject` entry for a new subject (counts and flags, never names)."""
    return {"event": "created", "protected": bool(protected), "aliases": alias_count}
