"""Why: a policy bundle goes live only after it validated in full (validate-then-activate, as in
OPA): the base policy, every tenant overlay, the registered models. `load_bundle` collects every
problem before refusing, so an admin sees them all at once. Reading and parsing single files is
`gateway.policy.parse`; overlays are `gateway.policy.overlay`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.policy.errors import PolicyError
from gateway.policy.overlay import load_overlays
from gateway.policy.parse import (
    ModelCheck,
    bundle_digest,
    bundle_files,
    check_models,
    digest_of,
    parse_policy,
    snapshot,
)
from gateway.policy.schema import Policy

__all__ = ["PolicyBundle", "PolicyError", "bundle_digest", "bundle_files", "load_bundle", "parse_policy"]


@dataclass(frozen=True)
class PolicyBundle:
    policy: Policy
    digest: str
    directory: Path
    files: tuple[str, ...]
    loaded_at: datetime
    overlays: dict[str, Policy] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def for_tenant(self, tenant: str) -> Policy:
        return self.overlays.get(tenant, self.policy)


def load_bundle(
    directory: Path, *, policy_name: str = "default", is_registered: ModelCheck | None = None
) -> PolicyBundle:
    """Parse and validate the whole bundle; raise PolicyError listing every problem found."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError([f"{directory}: the policy directory does not exist"])
    main = directory / f"{policy_name}.yaml"
    files = snapshot(directory)
    if f"{policy_name}.yaml" not in files:
        raise PolicyError([f"{main}: policy file not found (policy name {policy_name!r})"])
    errors: list[str] = []
    policy: Policy | None = None
    try:
        policy = parse_policy(main, files[f"{policy_name}.yaml"])
    except PolicyError as exc:
        errors.extend(exc.errors)
    if policy is not None and is_registered is not None:
        errors.extend(check_models(policy, main, is_registered))
    overlays: dict[str, Policy] = {}
    if policy is not None:
        try:
            overlays = load_overlays(directory, policy, is_registered, files)
        except PolicyError as exc:
            errors.extend(exc.errors)
    if errors or policy is None:
        raise PolicyError(errors)
    return PolicyBundle(policy=policy, digest=digest_of(files), directory=directory, files=tuple(sorted(files)),
                        loaded_at=datetime.now(UTC), overlays=overlays)
