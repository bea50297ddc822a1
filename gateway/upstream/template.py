"""Why: a generic JSON upstream is described in routes.yaml, not in code: a request template
with placeholders and a dotted path to the images in the answer. Rendering is a pure function,
so a template can be tested without a server."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.upstream.errors import TemplateError

_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ANY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill placeholders. `"{n}"` alone becomes the value itself (an int stays an int); inside a
    longer string each placeholder is replaced by its text. A placeholder whose value is None
    drops the key it stands alone in; an unknown placeholder is an error."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            rendered = render(value, values)
            if rendered is _DROP:
                continue
            out[key] = rendered
        return out
    if isinstance(template, list):
        return [v for v in (render(item, values) for item in template) if v is not _DROP]
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            name = whole.group(1)
            if name not in values:
                raise TemplateError(f"unknown placeholder {{{name}}}")
            return _DROP if values[name] is None else values[name]

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise TemplateError(f"unknown placeholder {{{name}}}")
            return "" if values[name] is None else str(values[name])

        return _ANY.sub(sub, template)
    return template


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP = _Drop()


def extract(document: Any, path: str) -> list[Any]:
    """Values at a dotted path; `*` walks every item of a list; a list at the end is flattened."""
    current: list[Any] = [document]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if part == "*":
                if not isinstance(item, list):
                    raise TemplateError(f"`*` in {path!r} met a {type(item).__name__}, not a list")
                nxt.extend(item)
            elif isinstance(item, list) and part.lstrip("-").isdigit():
                index = int(part)
                if not -len(item) <= index < len(item):
                    raise TemplateError(f"index {index} in {path!r} is out of range ({len(item)} items)")
                nxt.append(item[index])
            elif isinstance(item, dict):
                if part not in item:
                    raise TemplateError(f"no key {part!r} at {path!r}")
                nxt.append(item[part])
            else:
                raise TemplateError(f"{path!r}: cannot take {part!r} from a {type(item).__name__}")
        current = nxt
    flat: list[Any] = []
    for item in current:
        flat.extend(item if isinstance(item, list) else [item])
    return flat
