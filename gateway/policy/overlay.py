"""Why: tenants may need a stricter policy than the base, never a looser one unless the base
says so. An overlay file `policies/tenants/NAME.yaml` is a partial policy merged onto the base
(mappings merge key by key; lists such as `nsfw` checks or prompt `rules` replace the base's list
whole, so repeat what you keep); an optional `applies_to: [policy names]` limits the overlay to
those base policies (others ignore it). The merged result is compared with the base and any
loosening not listed in the base's `tenant_may_loosen.settings` is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.policy.errors import PolicyError
from gateway.policy.parse import ModelCheck, ModelNames, check_models, locate, read_yaml, snapshot, validation_errors
from gateway.policy.schema import Policy
from gateway.policy.tighten import loosenings


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base.get(key), value) if key in base else value
        return out
    return over


def load_overlays(
    directory: Path, base: Policy, is_registered: ModelCheck | ModelNames | None,
    files: dict[str, bytes] | None = None,
) -> dict[str, Policy]:
    files = files if files is not None else snapshot(directory)
    overlay_files = sorted(rel for rel in files if rel.startswith("tenants/") and rel.count("/") == 1)
    if not overlay_files:
        return {}
    overlays: dict[str, Policy] = {}
    errors: list[str] = []
    base_dump = base.model_dump(mode="json")
    for rel in overlay_files:
        path = directory / rel
        tenant = path.stem
        data, node = read_yaml(path, files[rel])
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(f"{path}:1: an overlay must be a mapping")
            continue
        applies_to = data.pop("applies_to", None)
        if applies_to is not None:
            if not isinstance(applies_to, list) or not all(isinstance(x, str) for x in applies_to):
                where = locate(node, ["applies_to"])[0] or "?"
                errors.append(f"{path}:{where}: applies_to: must be a list of base policy names")
                continue
            if base.name not in applies_to:
                continue  # written for another base policy of the directory; this tenant gets the base
        merged = deep_merge(base_dump, data)
        merged.setdefault("name", f"{base.name}+{tenant}")
        if "name" not in data:
            merged["name"] = f"{base.name}+{tenant}"
        try:
            policy = Policy.model_validate(merged)
        except ValidationError as exc:
            errors.extend(validation_errors(path, node, exc))
            continue
        if is_registered is not None:
            errors.extend(check_models(policy, path, is_registered, node, only_local=True))
        allowed = set(base.tenant_may_loosen.settings)
        for setting, why in loosenings(base, policy):
            if not any(setting == a or setting.startswith(a + ".") for a in allowed):
                line, _ = locate(node, setting.split("."))
                errors.append(
                    f"{path}:{line or '?'}: {setting}: an overlay may only tighten the base policy ({why}); "
                    f"list {setting!r} under tenant_may_loosen.settings in the base to allow it"
                )
        overlays[tenant] = policy
    if errors:
        raise PolicyError(errors)
    return overlays
