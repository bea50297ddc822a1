"""Why: which files make a policy bundle and the digest over their bytes, without parsing them: the
digest names the bundle in every decision, and a command that only needs to know whether the bundle
changed (`consentgate registry grant` reusing the uses it validated before, #22.6) must not pay for the
policy schema. `gateway.policy.parse` re-exports these.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.policy.errors import PolicyError

__all__ = ["bundle_digest", "bundle_files", "digest_of", "snapshot"]


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
