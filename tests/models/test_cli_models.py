"""Why: the `consentgate models` group is what operators type; its list and face-ready commands
must work on a fresh data dir (the registry-switch logic itself is tested in test_face_swap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers import draw_fake_face
from gateway.cli.models import models_app

runner = CliRunner()


def test_list_shows_weights_and_installs() -> None:
    result = runner.invoke(models_app, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split() == ["nsfw", "openclip", "model_dir", "extras"] for line in lines)
    assert any(line.split() == ["face", "insightface", "model_dir", "insightface"] for line in lines)
    assert any(line.split() == ["face", "mtcnn+dlib", "package", "extras"] for line in lines)
    assert any(line.split() == ["nsfw", "nudenet", "package", "default"] for line in lines)
    assert any(line.split() == ["textcls", "hf-text", "model_dir", "default"] for line in lines)


def test_face_ready_on_a_local_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from classifiers import builtin_registry
    from classifiers.fake import FakeFaceAnalyzer
    from gateway.bootstrap import open_registry
    from gateway.cli.common import load_settings
    from gateway.cli.server import run_init
    from gateway.db import make_engine
    from gateway.policy.runtime import ModelPool

    data = tmp_path / "data"
    monkeypatch.delenv("CONSENTGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONSENTGATE_KEYSTORE_URL", raising=False)
    settings = load_settings(data)
    run_init(settings, quiet=True)
    result = runner.invoke(models_app, ["face-ready", "--model", "fake", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ready"] is True

    engine = make_engine(settings.resolved_database_url)
    reg = open_registry(settings, engine, ModelPool(builtin_registry()))
    reg.face_analyzers["other"] = FakeFaceAnalyzer(name="other")
    subject = reg.create_subject("Person 9", [], False, "registrar").id
    image = np.full((128, 128, 3), 90, np.uint8)
    draw_fake_face(image, 9, x=20, y=20, size=80)
    reg.enroll(subject, [image], "notice-1", "registrar")
    reg.close()
    engine.dispose()

    result = runner.invoke(models_app, ["face-ready", "--model", "fake", "--data-dir", str(data)])
    assert result.exit_code == 1 and json.loads(result.stdout) == {
        "model": "fake",
        "model_version": "fake-1",
        "ready": False,
        "missing": 1,
    }
    result = runner.invoke(
        models_app, ["face-ready", "--model", "fake", "--reembed", "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ready"] is True and report["templates"] == 1
