"""Why: the audit log is append-only and signed, so whatever it holds it holds for ever — yet a
generation service's end user has a right to be forgotten (GDPR Art. 17). End-user ids therefore
enter the log only as a keyed hash, `hk1:<key id>:<HMAC-SHA256(tenant key, end user)>`, under a
per-tenant key kept in the key store (sealed by the KEK, beside the subjects' keys, outside the main
database). While the key exists the tenant can find its own end user's decisions by the clear id
(the gateway recomputes the hash); destroying the key (`consentgate audit forget-end-users --tenant
T`) makes every pseudonym written under it unlinkable to anyone, while every record, leaf hash and
proof stays exactly as it was. A new key (new key id) serves the tenant's later decisions.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time

from gateway.registry.envelope import SubjectCrypto  # not .crypto: the CLI's sqlite3 path imports no SQLAlchemy
from gateway.registry.errors import SubjectKeyExists, SubjectKeyNotFound

__all__ = ["PREFIX", "EndUserPseudonyms"]

PREFIX = "hk1:"
CACHE_S = 5.0  # another replica's forget reaches this one within this long


def _slot(tenant: str) -> str:
    return f"enduser-key:{tenant}"


class EndUserPseudonyms:
    """Keyed hashes of end-user ids, one key per tenant in the key store."""

    def __init__(self, crypto: SubjectCrypto) -> None:
        self.crypto = crypto
        self._cache: dict[str, tuple[float, str, bytes]] = {}
        self._lock = threading.Lock()

    def _key(self, tenant: str, *, create: bool) -> tuple[str, bytes] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant)
            if hit is not None and now - hit[0] < CACHE_S:
                return hit[1], hit[2]
        try:
            dek = self.crypto._dek(_slot(tenant))  # noqa: SLF001 - the key store's own data key API
        except SubjectKeyNotFound:
            if not create:
                return None
            with contextlib.suppress(SubjectKeyExists):  # another replica made it first
                self.crypto.new_subject_key(_slot(tenant))
            dek = self.crypto._dek(_slot(tenant))  # noqa: SLF001
        key_id = hashlib.sha256(b"consentgate end-user key id\x00" + dek).hexdigest()[:8]
        with self._lock:
            self._cache[tenant] = (now, key_id, dek)
        return key_id, dek

    def pseudonym(self, tenant: str, end_user: str, *, create: bool = True) -> str | None:
        """`hk1:<key id>:<hex>` for this tenant's end user (the tenant's key is made on first use);
        None when `create` is False and the tenant has no key (nothing written since it was forgotten)."""
        found = self._key(tenant, create=create)
        if found is None:
            return None
        key_id, dek = found
        digest = hmac.new(dek, tenant.encode() + b"\x00" + end_user.encode(), hashlib.sha256).hexdigest()
        return f"{PREFIX}{key_id}:{digest}"

    def forget(self, tenant: str) -> bool:
        """Destroy the tenant's end-user key: every pseudonym made under it is unlinkable for good."""
        with self._lock:
            self._cache.pop(tenant, None)
        return self.crypto.shred(_slot(tenant))
