"""Why: errors in a policy file must name the file, the line and the field path so an admin can fix
a typo fast, and a bundle's digest must cover exactly the bytes that were parsed. This module reads
the bundle's files once (`snapshot`), digests them, parses one policy file with line numbers
(`parse_policy`), and checks that every model adapter a policy names is registered.

The bundle digest is SHA-256 over every YAML file of the policy directory (policies, tenant
overlays, routes.yaml) in sorted path order, excluding `tests/` and `bundle.sig`; each file
contributes `path NUL length NUL bytes`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.policy.errors import PolicyError
from gateway.policy.schema import Policy

__all__ = ["ModelCheck", "bundle_digest", "bundle_files", "check_models", "digest_of", "parse_policy",
           "read_yaml", "snapshot", "validation_errors"]


def bundle_files(directory: Path) -> list[Path]:
    """The YAML files of the bundle. Hidden entries are skipped — among them the `..<timestamp>/`
    folders a Kubernetes ConfigMap mount keeps beside its files, which would otherwise make the
    digest differ per pod."""
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not path.is_file() or rel.parts[0] == "tests" or path.name == "bundle.sig":
            continue
        if path.suffix in (".yaml", ".yml"):
            files.append(path)
    return files


def snapshot(directory: Path) -> dict[str, bytes]:
    """Read every bundle file once: the digest and the parse use the same bytes, so a file
    swapped during a reload cannot be parsed under another file's digest or signature."""
    out: dict[str, bytes] = {}
    for path in bundle_files(directory):
        try:
            out[path.relative_to(directory).as_posix()] = path.read_bytes()
        except OSError as exc:
            raise PolicyError([f"{path}: cannot read: {exc}"]) from None
    return out


def digest_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def bundle_digest(directory: Path) -> str:
    return digest_of(snapshot(directory))


def _node_line(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value
                    line = key.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


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
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
        field_path = ".".join(str(p) for p in loc) or "(top level)"
        line = _node_line(node, loc)
        out.append(f"{path}:{line or '?'}: {field_path}: {err['msg']}")
    return out


def parse_policy(path: Path, raw: bytes | None = None) -> Policy:
    data, node = read_yaml(path, raw)
    if not isinstance(data, dict):
        raise PolicyError([f"{path}:1: the file must hold a mapping (a policy), not {type(data).__name__}"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(validation_errors(path, node, exc)) from None


ModelCheck = Callable[[str, str], bool]


def check_models(policy: Policy, path: Path, is_registered: ModelCheck) -> list[str]:
    """Every adapter a policy names must be registered: an unknown name stops the load."""
    errors = []
    wanted: list[tuple[str, str, str]] = [
        ("nsfw", spec.adapter, f"models.{alias}.adapter") for alias, spec in policy.models.items()
    ]
    wanted.append(("face", policy.consent.face_model.adapter, "consent.face_model.adapter"))
    wanted.append(("hash", policy.hash_list.model.adapter, "hash_list.model.adapter"))
    if policy.prompt.text_model is not None:
        wanted.append(("text", policy.prompt.text_model.adapter, "prompt.text_model.adapter"))
    elif policy.prompt.concepts:
        errors.append(f"{path}: prompt.concepts: semantic concepts need prompt.text_model (e.g. adapter: minilm)")
    for family, name, where in wanted:
        if not is_registered(family, name):
            errors.append(f"{path}: {where}: no {family} model adapter is registered under the name {name!r}")
    return errors
