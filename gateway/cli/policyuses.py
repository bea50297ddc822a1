"""Why: a grant's uses must be the policy's (#22.4), and validating the bundle needs the policy schema
(~0.2 CPU-s) — more than a scripted `registry grant` may spend on start-up (#22.6). So the uses of the last
bundle validated are kept in `<data dir>/cache/policy-uses.json` with the bundle's digest (every YAML
byte, `gateway.policy.files`), the policy name and a stamp of the code that validated it (`_code_stamp`: the
policy package and the model registry, so an upgraded gateway whose rules changed does not trust a verdict of
the old one); any change of the bundle or of that code misses the cache and validates it in full again. A
bundle that does not validate refuses the grant, cache or not. Both write paths (`writelite`, `writedb`)
use this; it imports neither SQLAlchemy nor the policy schema on a hit.

`registry retention run` reads the policy's `retention:` rules the same way (`policy_retention`, in
`cache/policy-retention.json`), cached only after the bundle validated as that command validates it (the
default policy, its models checked against the built-in registry).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.registry.retention_plan import RuleValues
    from gateway.settings import Settings

__all__ = ["policy_retention", "policy_uses"]

RULE_FIELDS = ("max_age_days", "max_idle_days", "purpose_end", "grace_days", "ceiling_days")


def _code_stamp() -> str:
    """Path, size and mtime of every module that decides whether a bundle validates (gateway/policy, the
    built-in model registry): a few stat calls, no imports. Any edit or upgrade of them changes it."""
    import hashlib

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "gateway" / "policy").glob("*.py")) + [root / "classifiers" / "registry.py"]
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:32]


def _cache_file(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "policy-uses.json"


def policy_uses(settings: Settings) -> set[str]:
    """The uses the bundle in `settings.policies_dir` defines (its base policy and every overlay), from the
    cache when the bundle's digest and policy name match, else by validating the bundle in full
    (PolicyError when it does not validate). See the module docstring."""
    from gateway.policy.files import digest_of, snapshot

    name = str(settings.extra.get("policy_name", "default"))
    digest = digest_of(snapshot(settings.policies_dir))
    try:
        cached = json.loads(_cache_file(settings).read_text())
        if cached["digest"] == digest and cached["policy_name"] == name and cached["code"] == _code_stamp():
            return {str(u) for u in cached["uses"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from gateway.policy.loader import load_bundle

    bundle = load_bundle(settings.policies_dir, policy_name=name)
    # `gateway.bootstrap.bundle_uses` without importing the bootstrap (SQLAlchemy, the audit log, the policy
    # manager: ~0.17 CPU-s of a grant after a policy edit); tests/cli/test_writedb.py compares the two
    uses = {use for policy in (bundle.policy, *bundle.overlays.values()) for use in policy.uses}
    _write_cache(_cache_file(settings), {"digest": bundle.digest, "policy_name": name, "code": _code_stamp(),
                                         "uses": sorted(uses)})
    return uses


def policy_retention(settings: Settings) -> dict[str, RuleValues]:
    """The `retention:` rules (face, voice) of the default policy in `settings.policies_dir`, from the cache
    when the bundle's digest matches, else by validating the bundle as `registry retention run` always did
    (its models checked against the built-in registry; PolicyError when it does not validate)."""
    from gateway.policy.files import digest_of, snapshot
    from gateway.registry.retention_plan import RuleValues

    path = settings.data_dir / "cache" / "policy-retention.json"
    digest = digest_of(snapshot(settings.policies_dir))
    try:
        cached = json.loads(path.read_text())
        if cached["digest"] == digest and cached["code"] == _code_stamp():
            return {m: RuleValues(**{f: cached["rules"][m][f] for f in RULE_FIELDS}) for m in ("face", "voice")}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from classifiers.registry import builtin_registry
    from gateway.policy.loader import load_bundle
    from gateway.policy.runtime import ModelPool

    bundle = load_bundle(settings.policies_dir, is_registered=ModelPool(builtin_registry()).registry)
    config = bundle.policy.retention
    rules = {m: RuleValues(**{f: getattr(getattr(config, m), f) for f in RULE_FIELDS}) for m in ("face", "voice")}
    _write_cache(path, {"digest": bundle.digest, "code": _code_stamp(),
                        "rules": {m: {f: getattr(r, f) for f in RULE_FIELDS} for m, r in rules.items()}})
    return rules


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    """Best effort (a read-only data dir just validates every time); atomic, so a reader never sees half."""
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError:
        pass
