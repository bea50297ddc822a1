"""`policy test` (#22.7): runs one case file (`policy test FILE`) or a bundle's cases, shows what
decide() did for a failed case (every rule that fired, with its detail, and the scores it saw), and
warns about a tenant overlay that no case tests. Successful reloads are logged with the new digest."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from classifiers.registry import builtin_registry
from gateway.policy.manager import PolicyManager
from gateway.policy.parse import bundle_digest
from gateway.policy.runtime import ModelPool
from gateway.settings import Settings
from tests.support.cli import app, runner
from tests.support.policy import FAKE_HEAD, write

BASE = FAKE_HEAD + """\
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8, review: 0.5}}
"""
PASSING = """\
cases:
  - name: clean
    facts: {stage: output, use: txt2img, nsfw: [{model: fake, scores: {unsafe: 0.1}}]}
    expect: {decision: allow}
"""
FAILING = """\
cases:
  - name: wrongly expected
    facts: {stage: output, use: txt2img, nsfw: [{model: fake, scores: {unsafe: 0.93, suggestive: 0.2}}]}
    expect: {decision: allow}
"""


def test_one_file_and_the_why_of_a_failure(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    good = write(tmp_path, PASSING, "tests/good.yaml")
    bad = write(tmp_path, FAILING, "tests/bad.yaml")
    only_good = runner.invoke(app, ["policy", "test", str(good)])
    assert only_good.exit_code == 0, only_good.output
    assert "1 passed, 0 failed" in only_good.stdout and "wrongly expected" not in only_good.stdout
    result = runner.invoke(app, ["policy", "test", str(bad)])
    assert result.exit_code == 1
    assert "FAIL default: bad.yaml: wrongly expected — decision deny, expected allow" in result.stdout
    assert "fired [deny] txt2img.output.nsfw.fake.unsafe: " in result.stdout and "0.930" in result.stdout
    assert "scores fake: suggestive=0.200, unsafe=0.930" in result.stdout
    everything = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert everything.exit_code == 1 and "1 passed, 1 failed" in everything.stdout


def test_an_overlay_without_cases_is_warned_about(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    write(tmp_path, "description: stricter\n", "tenants/acme.yaml")
    write(tmp_path, PASSING, "tests/good.yaml")
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 0  # a warning, not a failure
    assert "warning: tenant overlay tenants/acme.yaml has no test cases" in result.stderr
    write(tmp_path, "tenant: acme\n" + PASSING, "tests/acme.yaml")
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_successful_reloads_are_logged_with_the_digest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, BASE)
    manager = PolicyManager(tmp_path, ModelPool(builtin_registry()))
    with caplog.at_level(logging.INFO, logger="consentgate.policy"):
        assert manager.reload()
        first = bundle_digest(tmp_path)
        write(tmp_path, BASE.replace("0.8", "0.7"))
        assert manager.reload()
    lines = [r.getMessage() for r in caplog.records if r.name == "consentgate.policy"]
    second = bundle_digest(tmp_path)
    assert any(f"digest {first} (was nothing)" in line for line in lines), lines
    assert any(f"digest {second} (was {first})" in line for line in lines), lines


def test_serve_logs_the_gateway_lines_at_info() -> None:
    from gateway.cli.server import _logging

    config = _logging(Settings())
    assert config is not None
    assert config["loggers"]["consentgate"]["level"] == "INFO"  # type: ignore[index]
