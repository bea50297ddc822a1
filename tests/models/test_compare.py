"""Why: before promoting a candidate NSFW model, `consentgate models compare` shows how it agrees
with the baseline: per label agreement and verdict confusion at the policy thresholds, score
correlation, latency, and the images where they disagree most — on a folder (both models run) or
from the candidate's shadow findings in the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from classifiers import evaluation as ev
from gateway.cli.models import models_app
from tests.models.conftest import needs_transformers

runner = CliRunner()


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for name, rgb in {"red": (235, 15, 15), "yellow": (230, 230, 20)}.items():
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), rgb, np.uint8)).save(root / f"{name}{i}.png")
    for i in range(4):
        Image.fromarray(rng.integers(0, 150, size=(40, 40, 3), dtype=np.uint8)).save(root / f"noise{i}.png")
    return root


def _policy(path: Path, models: dict[str, object], checks: list[dict[str, object]]) -> Path:
    doc = {
        "name": "cmp",
        "models": models,
        "consent": {"face_model": {"adapter": "fake"}},
        "uses": {"txt2img": {"output": {"nsfw": checks}}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_compare_label_math() -> None:
    r = ev.compare_label(
        ["a", "b", "c", "d"],
        [0.9, 0.1, 0.6, 0.2],
        [0.95, 0.7, 0.1, 0.25],
        (0.8, 0.5),
        (0.8, 0.5),
        ("x", "x"),
        top=2,
    )
    assert r.n == 4 and r.agreement == 0.5
    assert r.confusion["deny"]["deny"] == 1 and r.confusion["allow"]["review"] == 1
    assert r.confusion["review"]["allow"] == 1 and r.confusion["allow"]["allow"] == 1
    assert [d["item"] for d in r.disagreements] == ["b", "c"]  # verdict changes, biggest gap first
    assert r.pearson is not None and r.spearman is not None
    assert ev.correlations([1, 1, 1], [1, 2, 3]) == (None, None)


def test_same_model_twice_agrees_fully(tmp_path: Path) -> None:
    images = _folder(tmp_path / "imgs")
    policy = _policy(
        tmp_path / "p.yaml",
        {"base": {"adapter": "fake"}, "cand": {"adapter": "fake"}},
        [
            {"model": "base", "labels": {"unsafe": {"deny": 0.8, "review": 0.4}}},
            {"model": "cand", "labels": {"unsafe": {"deny": 0.8}}, "shadow": True},
        ],
    )
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "base",
            "--candidate",
            "cand",
            "--dir",
            str(images),
            "--policy",
            str(policy),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (label,) = report["labels"]
    assert label["baseline_label"] == "unsafe" and label["n"] == 10
    # the candidate's own (shadow) check has no review threshold: yellow (0.5) is review vs allow
    assert label["confusion"]["review"]["allow"] == 3 and label["confusion"]["deny"]["deny"] == 3
    assert label["agreement"] == pytest.approx(0.7)
    assert {d["item"] for d in label["disagreements"]} == {"yellow0.png", "yellow1.png", "yellow2.png"}
    assert label["pearson"] == pytest.approx(1.0)
    assert report["latency"]["base"]["median_ms"] > 0


@needs_transformers
def test_fake_vs_tiny_vit_text_report(tmp_path: Path) -> None:
    from tests.models import tiny

    vit = tiny.hf_image_classifier(tmp_path / "vit", labels=("safe", "unsafe"))
    images = _folder(tmp_path / "imgs")
    policy = _policy(
        tmp_path / "p.yaml",
        {"base": {"adapter": "fake"}, "cand": {"adapter": "hf", "options": {"model_dir": str(vit)}}},
        [{"model": "base", "labels": {"unsafe": {"deny": 0.8}}}],
    )
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "base",
            "--candidate",
            "cand",
            "--dir",
            str(images),
            "--policy",
            str(policy),
            "--top",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "base (baseline) vs cand (candidate) on 10 items" in out
    assert "unsafe: agreement" in out and "(image verdict): agreement" in out
    assert "baseline \\ candidate   allow  review    deny" in out
    assert "latency base: median" in out and "latency cand: median" in out
    # labels with different names are paired explicitly; an unknown label is refused
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "base",
            "--candidate",
            "cand",
            "--dir",
            str(images),
            "--policy",
            str(policy),
            "--pair",
            "suggestive=unsafe",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (label,) = json.loads(result.stdout)["labels"]
    assert (label["baseline_label"], label["candidate_label"]) == ("suggestive", "unsafe")
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "base",
            "--candidate",
            "cand",
            "--dir",
            str(images),
            "--pair",
            "suggestive=porn",
            "--policy",
            str(policy),
        ],
    )
    assert result.exit_code == 1 and "--pair" in result.stderr


def test_since_reads_shadow_findings_from_the_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli.audit import open_local_log
    from gateway.cli.common import load_settings
    from gateway.cli.server import run_init

    data = tmp_path / "data"
    monkeypatch.setenv("CONSENTGATE_DATA_DIR", str(data))
    monkeypatch.delenv("CONSENTGATE_DATABASE_URL", raising=False)
    settings = load_settings(data)
    run_init(settings, quiet=True)
    log = open_local_log(settings)
    now = datetime.now(UTC).isoformat()
    pairs = [(0.9, 0.95), (0.1, 0.2), (0.85, 0.3), (0.2, 0.9), (0.05, 0.04)]
    for i, (b, c) in enumerate(pairs):
        log.append(
            {
                "kind": "decision",
                "decision_id": f"d{i}",
                "created_at": now,
                "decision": "allow",
                "tenant": "demo",
                "use": "txt2img",
                "stage": "output",
                "findings": {
                    "nsfw": [
                        {
                            "media_index": 0,
                            "model": "opennsfw",
                            "adapter": "opennsfw",
                            "model_version": "v1",
                            "scores": {"nsfw": b, "sfw": 1 - b},
                        },
                        {
                            "media_index": 0,
                            "model": "candidate",
                            "adapter": "hf",
                            "model_version": "v2",
                            "scores": {"nsfw": c, "normal": 1 - c},
                        },
                    ],
                    "shadow": [
                        {
                            "rule": "txt2img.output.nsfw.candidate.nsfw",
                            "model": "candidate",
                            "label": "nsfw",
                            "score": c,
                            "outcome": "deny" if c >= 0.8 else "allow",
                        }
                    ],
                },
            }
        )
    log.append(
        {
            "kind": "decision",
            "decision_id": "other",
            "created_at": now,
            "decision": "allow",
            "findings": {"nsfw": [{"media_index": 0, "model": "opennsfw", "scores": {"nsfw": 0.5}}]},
        }
    )
    log.close()
    policy = _policy(
        tmp_path / "p.yaml",
        {"opennsfw": {"adapter": "opennsfw"}, "candidate": {"adapter": "fake"}},
        [{"model": "opennsfw", "labels": {"nsfw": {"deny": 0.8}}}],
    )
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "opennsfw",
            "--candidate",
            "candidate",
            "--since",
            "1h",
            "--policy",
            str(policy),
            "--data-dir",
            str(data),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items"] == 5
    (label,) = report["labels"]
    assert label["baseline_label"] == "nsfw" and label["agreement"] == pytest.approx(0.6)
    assert label["confusion"]["deny"]["allow"] == 1 and label["confusion"]["allow"]["deny"] == 1
    worst = label["disagreements"]
    assert {d["item"] for d in worst[:2]} == {"d2:0", "d3:0"}  # verdict changes first, then score gaps
    assert worst[0]["baseline_outcome"] != worst[0]["candidate_outcome"]
    assert report["latency"]["opennsfw"]["median_ms"] is None
    result = runner.invoke(
        models_app,
        [
            "compare",
            "--baseline",
            "opennsfw",
            "--candidate",
            "nobody",
            "--since",
            "1h",
            "--data-dir",
            str(data),
        ],
    )
    assert result.exit_code == 1 and "no decision" in result.stderr


def test_needs_exactly_one_source(tmp_path: Path) -> None:
    result = runner.invoke(models_app, ["compare", "--baseline", "fake", "--candidate", "fake"])
    assert result.exit_code == 1 and "exactly one" in result.stderr
