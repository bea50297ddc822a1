"""Issue #15.3: overlays only tighten — every field. Each field of the policy schema has a rule in
`gateway.policy.tighten.FIELD_RULES` (a "stricter" order that `loosenings` checks, or `fixed`: may
change only when the base lists it under `tenant_may_loosen`). The walk below fails for a new field
without a rule; the table checks that the fields that had none before (ensemble members and combine
mode, watermark method and strength, text and voice models, video encoding, retention...) are now
refused when an overlay loosens them, and allowed when the base lists them."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.policy.loader import PolicyError
from gateway.policy.schema import Policy
from gateway.policy.tighten import FIELD_RULES
from tests.support import policy as bundles

BASE = """
name: base
models:
  fake: {adapter: fake}
  fake2: {adapter: fake}
consent: {face_model: {adapter: fake}}
prompt:
  rules:
    - {id: nudify, terms: [nudify], outcome: deny}
obligations:
  watermark: {method: dwtDctSvd, strength: 1.0}
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8, review: 0.5}}
      ensembles:
        - name: e1
          members: [{model: fake, label: unsafe}, {model: fake2, label: unsafe}]
          combine: max
          threshold: {deny: 0.9}
"""


def schema_fields() -> set[str]:
    seen: set[type[BaseModel]] = set()
    out: set[str] = set()

    def models_in(annotation: object) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    def walk(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, field in cls.model_fields.items():
            out.add(f"{cls.__name__}.{name}")
            for sub in models_in(field.annotation):
                walk(sub)

    walk(Policy)
    return out


def test_every_schema_field_has_a_tightening_rule() -> None:
    fields = schema_fields()
    missing = sorted(fields - set(FIELD_RULES))
    assert not missing, f"schema fields without a rule in gateway/policy/tighten.py FIELD_RULES: {missing}"
    stale = sorted(set(FIELD_RULES) - fields)
    assert not stale, f"FIELD_RULES names fields the schema no longer has: {stale}"
    kinds = {rule.split(":")[0].split(" ")[0] for rule in FIELD_RULES.values()}
    assert kinds <= {"order", "fixed", "container", "identity", "free"}


def load(tmp: Path, overlay: str, base_extra: str = "") -> object:
    bundles.write(tmp, BASE + base_extra)
    bundles.write(tmp, overlay, "tenants/t.yaml")
    return bundles.load(tmp)


ENSEMBLE = "uses: {txt2img: {output: {ensembles: [{name: e1, members: %s, combine: %s, threshold: {deny: 0.9}}]}}}\n"
PAIR = "[{model: fake, label: unsafe}, {model: fake2, label: unsafe}]"
ROWS = [
    ("ensemble combine max → mean", ENSEMBLE % (PAIR, "mean"), "uses.txt2img.output.ensembles.e1.combine"),
    ("ensemble members changed", ENSEMBLE % ("[{model: fake, label: unsafe}, {model: fake, label: other}]", "max"),
     "uses.txt2img.output.ensembles.e1.members"),
    ("watermark method", "obligations: {watermark: {method: rivaGan, strength: 1.0}}\n",
     "obligations.watermark.method"),
    ("watermark strength", "obligations: {watermark: {method: dwtDctSvd, strength: 0.5}}\n",
     "obligations.watermark.strength"),
    ("text model", "prompt: {text_model: {adapter: fake}, rules: [{id: nudify, terms: [nudify], outcome: deny}]}\n",
     "prompt.text_model"),
    ("voice model", "consent: {voice_model: {adapter: fake}}\n", "consent.voice_model"),
    ("voice threshold", "consent: {voice_match_threshold: 0.99}\n", "consent.voice_match_threshold"),
    ("video crf", "video: {crf: 40}\n", "video.crf"),
    ("video preset", "video: {preset: ultrafast}\n", "video.preset"),
    ("retention off", "retention: {enabled: false}\n", "retention.enabled"),
    ("retention ceiling", "retention: {face: {ceiling_days: 2000}}\n", "retention.face.ceiling_days"),
    ("retention grace", "retention: {voice: {grace_days: 90}}\n", "retention.voice.grace_days"),
    ("overlay widens its own loosening", "tenant_may_loosen: {settings: [obligations]}\n", "tenant_may_loosen"),
]


@pytest.mark.parametrize(("what", "overlay", "path"), ROWS, ids=[r[0] for r in ROWS])
def test_each_newly_ruled_field_refuses_a_loosening_overlay(tmp_path: Path, what: str, overlay: str,
                                                           path: str) -> None:
    with pytest.raises(PolicyError) as err:
        load(tmp_path, overlay)
    assert f": {path}:" in str(err.value) and "only tighten" in str(err.value), str(err.value)


def test_a_fixed_field_may_change_when_the_base_lists_it(tmp_path: Path) -> None:
    load(tmp_path, "obligations: {watermark: {method: rivaGan, strength: 2.0}}\n",
         "tenant_may_loosen: {settings: [obligations.watermark.method]}\n")
    with pytest.raises(PolicyError):
        load(tmp_path, "video: {crf: 40}\n", "tenant_may_loosen: {settings: [obligations.watermark.method]}\n")


def test_tightening_the_new_fields_is_allowed(tmp_path: Path) -> None:
    bundle = load(tmp_path, "obligations: {watermark: {method: dwtDctSvd, strength: 3.0}}\n"
                            "retention: {face: {ceiling_days: 365, grace_days: 7}}\n"
                            "consent: {voice_match_threshold: 0.5}\n")
    assert bundle.overlays["t"].obligations.watermark.strength == 3.0  # type: ignore[attr-defined]
