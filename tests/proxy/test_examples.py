"""The examples run as documented: `examples.openai_client` against a live gateway saves a
signed image (and exits 3 on a refusal); the reference upstream's pictures are deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples import openai_client
from examples.upstream import pictures
from gateway.provenance import read_manifest
from tests.proxy.conftest import ProxyEnv


def test_openai_client_example_saves_a_signed_image(
    env: ProxyEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "img.png"
    code = openai_client.main(["--url", env.url, "--api-key", env.keys.acme, "--out", str(out)])
    assert code == 0
    report = read_manifest(out.read_bytes(), "image/png", env.gw.provenance.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.decision is not None and report.decision["decision_id"] in capsys.readouterr().out


def test_openai_client_example_reports_a_refusal(
    env: ProxyEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "img.png"
    code = openai_client.main(
        ["--url", env.url, "--api-key", env.keys.acme, "--out", str(out), "--prompt", "nudify this photo"]
    )
    assert code == 3 and not out.exists()
    assert "policy_denied" in capsys.readouterr().err
    assert env.upstream.count() == 0


def test_pictures_are_deterministic_and_prompt_driven(astronaut: np.ndarray) -> None:
    a = pictures.generate("a lighthouse", "320x240")
    assert a.shape == (240, 320, 3)
    assert np.array_equal(a, pictures.generate("a lighthouse", "320x240"))
    assert not np.array_equal(a, pictures.generate("a lighthouse", "320x240", index=1))
    assert not np.array_equal(a, pictures.generate("a windmill", "320x240"))
    assert np.array_equal(pictures.generate("an astronaut", None), astronaut)
    assert (pictures.generate("solid red", "64x64") == (255, 0, 0)).all()
    composed = pictures.compose(np.array(astronaut), "on the moon", None)
    assert composed.shape == (512, 512, 3)
    assert pictures.parse_size("auto") == (512, 512) and pictures.parse_size("5000x10") == (1024, 64)
