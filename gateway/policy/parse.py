"""Why: errors in a policy file must name the file, the line and the field path so an admin can fix
a typo fast, and a bundle's digest must cover exactly the bytes that were parsed. This module reads
the bundle's files once (`snapshot`), digests them, parses one policy file with line numbers
(`parse_policy`), and checks that every model adapter a policy names is registered.

The bundle digest is SHA-256 over every YAML file of the policy directory (policies, tenant
overlays, routes.yaml) in sorted path order, excluding `tests/` and `bundle.sig`; each file
contributes `path NUL length NUL bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from gateway.policy.errors import PolicyError
from gateway.policy.files import bundle_digest, bundle_files, digest_of, snapshot
from gateway.policy.schema import Policy

__all__ = ["ModelCheck", "ModelNames", "bundle_digest", "bundle_files", "check_models", "digest_of", "dotted",
           "locate", "parse_policy", "read_yaml", "report", "snapshot", "validation_errors"]


def locate(node: yaml.Node | None, loc: Iterable[Any]) -> tuple[int | None, bool]:
    """Follow a field path through the YAML node tree: the 1-based line of the deepest part found,
    and whether the whole path was found. A string part inside a list picks the item whose
    `model`, `name` or `id` is that string (`nsfw.fake`, `ensembles.e1`, `rules.nudify`)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = _key(node, part) or _key(_key(node, "labels"), part)  # nsfw.MODEL.LABEL paths
            if found is None:
                return line, False
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, str):
            item = next((item for item in node.value if _item_named(item, part)), None)
            if item is None:
                return line, False
            node = item
            line = node.start_mark.line + 1
        else:
            return line, False
    return line, True


def _key(node: yaml.Node | tuple[yaml.Node, yaml.Node] | None, part: Any) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes of PART in a mapping node (or in the value of a found pair)."""
    if isinstance(node, tuple):
        node = node[1]
    if not isinstance(node, yaml.MappingNode):
        return None
    return next(((k, v) for k, v in node.value if k.value == str(part)), None)


def _item_named(item: yaml.Node, name: str) -> bool:
    if not isinstance(item, yaml.MappingNode):
        return False
    return any(k.value in ("model", "name", "id") and isinstance(v, yaml.ScalarNode) and v.value == name
               for k, v in item.value)


def _node_line(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    return locate(node, loc)[0]


def dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def report(issues: Iterable[tuple[str, str, str]]) -> list[str]:
    """`(where, field path, message)` → one `where: field.path: message` line per mistake.

    One value reached through several paths (a YAML anchor used six times, an overlay inheriting
    the base's value) is one mistake: the issues that share `where` (file:line) and message are
    reported once, naming the other paths. Order of first appearance is kept."""
    groups: dict[tuple[str, str], list[str]] = {}
    for where, field_path, message in issues:
        paths = groups.setdefault((where, message), [])
        if field_path not in paths:
            paths.append(field_path)
    out = []
    for (where, message), paths in groups.items():
        also = ""
        if len(paths) > 1:
            shown = ", ".join(paths[1:6]) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
            also = f" (the same value is also used at {shown})"
        out.append(f"{where}: {paths[0]}: {message}{also}")
    return out


_PATH_IN_MESSAGE = re.compile(r"^(?:Value error, )?([A-Za-z_][\w\-]*(?:\.[\w\-]+)+)(?::| is)")


def read_yaml(path: Path, raw: bytes | None = None) -> tuple[Any, yaml.Node | None]:
    try:
        text = raw.decode("utf-8") if raw is not None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}: cannot read: {exc}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise PolicyError([f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}"]) from None
    except RecursionError:
        raise PolicyError([f"{path}: the YAML is nested too deeply"]) from None
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp with month 13, an integer of 5000 digits
        raise PolicyError([f"{path}: a YAML value cannot be read: {str(exc)[:200]}"]) from None
    return data, node


def validation_errors(path: Path, node: yaml.Node | None, exc: ValidationError) -> list[str]:
    issues = []
    for err in exc.errors():
        loc: list[Any] = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
        message = err["msg"]
        if not loc:  # a whole-policy check names its field in the message: point at that field
            match = _PATH_IN_MESSAGE.match(message)
            if match:
                loc = [int(p) if p.isdigit() else p for p in match.group(1).split(".")]
        line = _node_line(node, loc)
        issues.append((f"{path}:{line or '?'}", dotted(loc), message))
    return report(issues)


def parse_policy(path: Path, raw: bytes | None = None) -> Policy:
    data, node = read_yaml(path, raw)
    if not isinstance(data, dict):
        raise PolicyError([f"{path}:1: the file must hold a mapping (a policy), not {type(data).__name__}"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(validation_errors(path, node, exc)) from None


ModelCheck = Callable[[str, str], bool]


class ModelNames(Protocol):
    """What the loader needs of a model registry (`classifiers.registry.ModelRegistry` is one)."""

    def has(self, family: str, name: str) -> bool: ...

    def names(self, family: str) -> tuple[str, ...]: ...


def check_models(
    policy: Policy, path: Path, is_registered: ModelCheck | ModelNames, node: yaml.Node | None = None,
    *, only_local: bool = False,
) -> list[str]:
    """Every adapter a policy names must be registered: an unknown name stops the load. The error
    points at the line of the name and lists the names registered for that family. With
    `only_local` (an overlay), only names the overlay file itself sets are checked: the base's
    names are the base file's mistakes, reported there once."""
    errors = []
    has = is_registered.has if not callable(is_registered) else is_registered
    names = getattr(is_registered, "names", None)
    wanted: list[tuple[str, str, tuple[str, ...]]] = [
        ("nsfw", spec.adapter, ("models", alias, "adapter")) for alias, spec in policy.models.items()
    ]
    wanted.append(("face", policy.consent.face_model.adapter, ("consent", "face_model", "adapter")))
    wanted.append(("hash", policy.hash_list.model.adapter, ("hash_list", "model", "adapter")))
    if policy.consent.voice_model is not None:
        wanted.append(("voice", policy.consent.voice_model.adapter, ("consent", "voice_model", "adapter")))
    if policy.prompt.text_model is not None:
        wanted.append(("text", policy.prompt.text_model.adapter, ("prompt", "text_model", "adapter")))
    elif policy.prompt.concepts:
        line, found = locate(node, ("prompt", "concepts"))
        if found or not only_local:
            errors.append(f"{path}:{line or '?'}: prompt.concepts: semantic concepts need prompt.text_model "
                          "(e.g. adapter: minilm)")
    for family, name, loc in wanted:
        if has(family, name):
            continue
        line, found = locate(node, loc)
        if only_local and not found:
            continue
        registered = ""
        if names is not None:
            listed = ", ".join(names(family)) or "(none)"
            registered = f"; registered {family} adapters: {listed}"
        errors.append(f"{path}:{line or '?'}: {dotted(loc)}: no {family} model adapter is registered under the "
                      f"name {name!r}{registered}")
    return errors
