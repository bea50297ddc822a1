"""Why: a policy bundle goes live only after it validated in full (validate-then-activate, as in
OPA): the base policy, every tenant overlay, the registered models. `load_bundle` collects every
problem before refusing, so an admin sees them all at once. Reading and parsing single files is
`gateway.policy.parse`; overlays are `gateway.policy.overlay`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.policy.errors import PolicyError
from gateway.policy.overlay import load_overlays
from gateway.policy.parse import (
    ModelCheck,
    ModelNames,
    bundle_digest,
    bundle_files,
    check_models,
    digest_of,
    locate,
    parse_policy,
    read_yaml,
    snapshot,
)
from gateway.policy.schema import Policy

__all__ = ["Locator", "PolicyBundle", "PolicyError", "bundle_digest", "bundle_files", "load_bundle", "parse_policy"]

Locator = Callable[[tuple[str | int, ...]], str]


@dataclass(frozen=True)
class PolicyBundle:
    policy: Policy
    digest: str
    directory: Path
    files: tuple[str, ...]
    loaded_at: datetime
    overlays: dict[str, Policy] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # The bytes that were parsed (relative path → bytes) and the base policy's file, so that checks
    # after parsing (labels, model loading, face-model readiness) can point at FILE:LINE too.
    sources: dict[str, bytes] = field(default_factory=dict, repr=False)
    main: str = "default.yaml"

    def for_tenant(self, tenant: str) -> Policy:
        return self.overlays.get(tenant, self.policy)

    def locator(self, tenant: str | None = None) -> Locator:
        """field path → `FILE:LINE` of the value in effect for TENANT (None: the base): the overlay's
        line when the overlay file sets that value, else the base file's line."""
        nodes: dict[str, Any] = {}

        def node(rel: str) -> Any:
            if rel not in nodes:
                try:
                    nodes[rel] = read_yaml(self.directory / rel, self.sources[rel])[1]
                except (KeyError, PolicyError):
                    nodes[rel] = None
            return nodes[rel]

        def where(loc: tuple[str | int, ...]) -> str:
            if tenant is not None and tenant in self.overlays:
                rel = f"tenants/{tenant}.yaml"
                line, found = locate(node(rel), loc)
                if found:
                    return f"{self.directory / rel}:{line}"
            line, _ = locate(node(self.main), loc)
            return f"{self.directory / self.main}:{line or '?'}"

        return where


def load_bundle(
    directory: Path, *, policy_name: str = "default", is_registered: ModelCheck | ModelNames | None = None
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
        errors.extend(check_models(policy, main, is_registered, read_yaml(main, files[main.name])[1]))
    overlays: dict[str, Policy] = {}
    if policy is not None:
        try:
            overlays = load_overlays(directory, policy, is_registered, files)
        except PolicyError as exc:
            errors.extend(exc.errors)
    if errors or policy is None:
        raise PolicyError(errors)
    return PolicyBundle(policy=policy, digest=digest_of(files), directory=directory, files=tuple(sorted(files)),
                        loaded_at=datetime.now(UTC), overlays=overlays, sources=files, main=f"{policy_name}.yaml")
