"""Why: the policy tests (errors, validate, `policy test`, loader, field rules) each build small policy
bundles in a temp folder around the deterministic `fake` adapter and ask what the gateway says of
them. The common head of those policies, writing their files and the two ways of asking (the loader
with the built-in adapters, and the manager as the gateway activates a bundle) are defined once here."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.registry import builtin_registry
from gateway.policy.errors import PolicyError
from gateway.policy.loader import PolicyBundle, load_bundle
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool

__all__ = ["FAKE_HEAD", "FAKE_TXT2IMG_USES", "activation_errors", "load", "write", "write_files"]

# a policy named `base` whose one model and face model are the deterministic fake adapter; tests add
# `uses:` (and `prompt:` …) after it. Line numbers that tests assert count from this head (4 lines).
FAKE_HEAD = """\
name: base
models:
  fake: {adapter: fake}
consent: {face_model: {adapter: fake}}
"""

# the one use the pipeline tests check: the fake NSFW model denies `unsafe` >= 0.8 on outputs, an
# unmatched face is allowed, a matched face needs a grant
FAKE_TXT2IMG_USES = """\
uses:
  txt2img:
    input: {}
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8}}
      faces: {unmatched: allow, without_consent: deny}
"""


def write(root: Path, text: str, rel: str = "default.yaml") -> Path:
    """Write TEXT to ROOT/REL (folders made as needed); the path."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        write(root, text, rel)


def load(directory: Path) -> PolicyBundle:
    """The bundle in DIRECTORY as the loader reads it, with the built-in adapters registered (an
    unknown name's error lists them)."""
    return load_bundle(directory, is_registered=builtin_registry())


def activation_errors(directory: Path) -> list[str]:
    """What the gateway says when it activates DIRECTORY (the manager: load, models, labels) — which
    must be a refusal."""
    manager = PolicyManager(directory, ModelPool(builtin_registry()))
    with pytest.raises(PolicyError) as err:
        manager.build()
    return err.value.errors
