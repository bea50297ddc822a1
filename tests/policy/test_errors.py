"""Policy errors point (#22.5): every error carries FILE:LINE of the offending value — base file,
overlays, adapters and labels alike —, a mistake reached through several paths (a YAML anchor, an
overlay inheriting the base) is reported once, and an unknown adapter lists the registered ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.registry import builtin_registry
from gateway.policy.errors import PolicyError
from tests.support.policy import FAKE_HEAD, activation_errors, load, write

ANCHORED = FAKE_HEAD + """\
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: &thr
            unsafe: {deny: 0.5, review: 0.8}
  img2img:
    output:
      nsfw:
        - {model: fake, labels: *thr}
  txt2video:
    output:
      nsfw:
        - {model: fake, labels: *thr}
"""
BASE = FAKE_HEAD + """\
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels:
            unsafe: {deny: 0.8, review: 0.5}
"""


def test_one_mistake_behind_an_anchor_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, ANCHORED)
    errors = activation_errors(tmp_path)
    assert len(errors) == 1, errors
    # the anchor's definition holds the mistake: line 11 of default.yaml
    assert errors[0].startswith(f"{tmp_path / 'default.yaml'}:11: uses.txt2img.output.nsfw.0.labels.unsafe: ")
    assert "review (0.8) must not be above deny (0.5)" in errors[0]
    assert "also used at uses.img2img.output.nsfw.0.labels.unsafe, uses.txt2video" in errors[0]


def test_unknown_label_behind_an_anchor_is_reported_once_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, ANCHORED.replace("unsafe: {deny: 0.5, review: 0.8}", "nsfww: {deny: 0.9}"))
    errors = activation_errors(tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'default.yaml'}:11: uses.txt2img.output.nsfw.0.labels.nsfww: ")
    assert "label 'nsfww' is not produced by adapter 'fake' (its labels: unsafe, suggestive)" in errors[0]


def test_unknown_adapter_points_at_its_line_and_lists_the_registered_ones(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("fake: {adapter: fake}", "fake: {adapter: nsfw-9000}"))
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    (error,) = err.value.errors
    assert error.startswith(f"{tmp_path / 'default.yaml'}:3: models.fake.adapter: no nsfw model adapter")
    registered = builtin_registry().names("nsfw")
    assert f"registered nsfw adapters: {', '.join(registered)}" in error and "nudenet" in registered


def test_overlay_errors_point_into_the_overlay_file(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    overlay = write(tmp_path, "models:\n  fake: {adapter: fakee}\n", "tenants/acme.yaml")
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    error = err.value.errors[0]
    assert error.startswith(f"{overlay}:2: models.fake.adapter: no nsfw model adapter") and "fakee" in error
    assert all(e.startswith(f"{overlay}:2: models.fake") for e in err.value.errors)  # + "model changed"
    write(tmp_path, "uses:\n  txt2img:\n    output:\n      nsfw:\n        - model: fake\n"
                    "          labels: {unsafe: {deny: 0.95}}\n", "tenants/acme.yaml")
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    (error,) = err.value.errors
    assert error.startswith(f"{overlay}:6: uses.txt2img.output.nsfw.fake.unsafe: an overlay may only tighten")


def test_a_base_mistake_is_not_repeated_per_overlay(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("unsafe: {deny", "nsfww: {deny"))
    write(tmp_path, "description: stricter\n", "tenants/acme.yaml")
    write(tmp_path, "description: other\n", "tenants/beta.yaml")
    errors = activation_errors(tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'default.yaml'}:11: uses.txt2img.output.nsfw.0.labels.nsfww:")


def test_an_overlay_label_mistake_points_into_the_overlay(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    overlay = write(tmp_path, "uses:\n  txt2img:\n    output:\n      nsfw:\n        - model: fake\n"
                              "          labels:\n            unsafe: {deny: 0.5, review: 0.3}\n"
                              "            nsfww: {deny: 0.5}\n",
                    "tenants/acme.yaml")
    errors = activation_errors(tmp_path)
    assert errors == [f"{overlay}:8: uses.txt2img.output.nsfw.0.labels.nsfww: label 'nsfww' is not produced by "
                      "adapter 'fake' (its labels: unsafe, suggestive)"]


def test_a_whole_policy_check_points_at_the_field_it_names(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("- model: fake", "- model: ghost"))
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    (error,) = err.value.errors
    assert error.startswith(f"{tmp_path / 'default.yaml'}:8: uses.txt2img.output.nsfw: ")
    assert "model 'ghost' is not defined under `models`" in error
