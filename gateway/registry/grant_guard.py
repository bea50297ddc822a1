"""Why: a grant is consent recorded for a tenant to do something. A grant that names a use the policy
does not know (`txt2imgg`) or a tenant nobody operates (`studoi`) admits nobody, yet the registrar
reads 201 and believes consent was recorded (#22.4). The guard refuses both when the grant is made
(422, listing the policy's uses, or saying how a tenant becomes known), for the HTTP API and the CLI
alike, since both go through `Registry.grant`.

What is known comes from the composition root: the uses of the active policy bundle (the base and
its tenant overlays) and the tenants that hold an API key, are declared in `CONSENTGATE_TENANTS`, or
are the operator's. A registrar may record consent for a tenant whose keys do not exist yet by
saying so (`allow_new_tenant`, CLI `--allow-new-tenant`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from gateway.registry.errors import InvalidRequest, RegistryUnavailable

__all__ = ["GrantGuard", "UnknownTenant", "UnknownUse"]


class UnknownUse(InvalidRequest):
    """A grant names a use the active policy does not define."""


class UnknownTenant(InvalidRequest):
    """A grant names a tenant with no keys and no declaration."""


@dataclass(frozen=True)
class GrantGuard:
    uses: Callable[[], Collection[str] | None]  # None: no policy is active (cannot check: refuse)
    tenants: Callable[[], Collection[str]]

    def check(self, tenant: str, uses: Sequence[str], *, allow_new_tenant: bool = False) -> None:
        known_uses = self.uses()
        if known_uses is None:
            raise RegistryUnavailable("no policy is active, so the grant's uses cannot be checked; try again "
                                      "once the gateway has loaded its policy")
        unknown = [u for u in dict.fromkeys(uses) if u not in known_uses]
        if unknown:
            listed = ", ".join(sorted(known_uses)) or "(none)"
            raise UnknownUse(f"{'uses' if len(unknown) > 1 else 'use'} {', '.join(map(repr, unknown))} "
                             f"{'are' if len(unknown) > 1 else 'is'} not defined by the active policy; "
                             f"its uses: {listed}")
        if not allow_new_tenant and tenant.strip() not in self.tenants():
            raise UnknownTenant(
                f"tenant {tenant!r} has no API keys and is not declared (CONSENTGATE_TENANTS); check the "
                "spelling, or create its keys first, or pass allow_new_tenant (CLI --allow-new-tenant) to "
                "record consent for a tenant that does not exist yet")
