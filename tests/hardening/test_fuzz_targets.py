"""The fuzz targets (fuzz/targets.py) as a quick bounded loop with a fixed seed: only the documented
exception types may escape media intake, video intake, the policy loader and the policy schema. The
cases the fuzzers found that still escape are pinned below as strict xfails (remove the mark when
fixed)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.runner import loop

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # corrupt EXIF is the input


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("target", "iterations"), [("media", 600), ("video", 300), ("policy", 600), ("policy-model", 600)]
)
def test_only_documented_exceptions_escape(target: str, iterations: int) -> None:
    report = loop(target, iterations, seed=0)
    assert not report.escaped, "\n\n".join(trace for _, trace, _ in report.escaped)
    assert sum(report.kinds.values()) == iterations
    # The loop reached both sides of the parser: inputs it accepts and inputs it refuses.
    assert report.kinds["ok"] > 0, report.kinds
    assert any(k.startswith("documented:") for k in report.kinds), report.kinds


@pytest.mark.timeout(120)
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_mode_runs(tmp_path: Path) -> None:
    """The coverage-guided mode works end to end (a short libFuzzer run on the policy loader)."""
    proc = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            sys.executable,
            str(REPO / "fuzz" / "run_policy.py"),
            "--atheris",
            "--iterations",
            "300",
            "--artifacts",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 300 runs" in proc.stderr


# -- what the fuzzers found, not fixed yet (outside this part's files) ------------------------------

LOADER = "gateway/policy/loader.py: parse_policy lets a non-PolicyError escape"


def test_parse_policy_deep_nesting_is_a_policy_error() -> None:
    from gateway.policy.loader import PolicyError, parse_policy

    with pytest.raises(PolicyError):
        parse_policy(Path("deep.yaml"), b"[" * 5000 + b"]" * 5000)


def test_parse_policy_huge_integer_is_a_policy_error() -> None:
    from gateway.policy.loader import PolicyError, parse_policy

    with pytest.raises(PolicyError):
        parse_policy(
            Path("int.yaml"), b"name: x\nuses: {}\nhash_list: {max_distance: " + b"9" * 5000 + b"}\n"
        )


def test_parse_policy_bad_timestamp_is_a_policy_error() -> None:
    from gateway.policy.loader import PolicyError, parse_policy

    with pytest.raises(PolicyError):
        parse_policy(Path("ts.yaml"), b"name: x\nuses: {}\ndescription: 2001-13-45\n")


SCHEMA = "gateway/policy/schema.py: TermRule._compiles catches only re.error"


def test_policy_regex_nesting_is_a_validation_error() -> None:
    from pydantic import ValidationError

    from gateway.policy.schema import Policy

    with pytest.raises(ValidationError):
        Policy.model_validate(
            {
                "name": "x",
                "uses": {},
                "prompt": {"rules": [{"id": "r", "regexes": ["(" * 2000 + ")" * 2000]}]},
            }
        )


def test_policy_regex_repeat_overflow_is_a_validation_error() -> None:
    from pydantic import ValidationError

    from gateway.policy.schema import Policy

    with pytest.raises(ValidationError):
        Policy.model_validate(
            {"name": "x", "uses": {}, "prompt": {"rules": [{"id": "r", "regexes": ["a{4294967296}"]}]}}
        )
