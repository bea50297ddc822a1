"""Why: the openclip adapter must load a checkpoint from an open_clip `local-dir:` folder with no
hub access, score each policy concept as documented (sigmoid of the scaled cosine margin over the
neutral prompts, or a per-concept calibration), serve as an image embedder, and reach findings.
Proved on a tiny random CLIP the test builds, against open_clip run directly. Extras venv only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from classifiers import ImageEmbedder, ModelError, NsfwClassifier, builtin_registry
from tests.models.conftest import needs_openclip
from tests.models.pipeline import policy_with, run_check

pytestmark = needs_openclip

CONCEPTS = {"explicit_nudity": ["explicit nudity", "a naked person"], "weapon": ["a gun", "a knife"]}


def _reference(folder: Path, images: list[np.ndarray], prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    with torch.inference_mode():
        img = model.encode_image(
            torch.stack([preprocess(Image.fromarray(i)) for i in images]), normalize=True
        )
        txt = model.encode_text(tokenizer(prompts), normalize=True)
    return img.numpy(), txt.numpy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_concept_scores_match_open_clip(clip_dir: Path, astronaut: np.ndarray, coffee: np.ndarray) -> None:
    model = builtin_registry().nsfw(
        "openclip", {"model_dir": str(clip_dir), "concepts": CONCEPTS, "scale": 50}
    )
    assert isinstance(model, NsfwClassifier)
    assert model.labels == ("explicit_nudity", "weapon") and len(model.info.version) == 16
    neutral = ["a photo", "an ordinary photo", "a photo of an everyday scene"]
    prompts = CONCEPTS["explicit_nudity"] + CONCEPTS["weapon"] + neutral
    img, txt = _reference(clip_dir, [astronaut, coffee], prompts)
    nude, weapon, neut = _unit(txt[:2].mean(0)), _unit(txt[2:4].mean(0)), _unit(txt[4:].mean(0))
    for row, scores in zip(img, model.classify([astronaut, coffee]), strict=True):
        base = float(row @ neut)
        for label, vec in (("explicit_nudity", nude), ("weapon", weapon)):
            want = 1.0 / (1.0 + math.exp(-50 * (float(row @ vec) - base)))
            assert scores[label] == pytest.approx(want, abs=1e-4)


def test_calibration_and_embedder(clip_dir: Path, astronaut: np.ndarray) -> None:
    registry = builtin_registry()
    calibrated = registry.nsfw(
        "openclip",
        {
            "model_dir": str(clip_dir),
            "concepts": CONCEPTS,
            "calibration": {
                "explicit_nudity": {"bias": -1.0, "scale": 10},
                "weapon": {"bias": 1.0, "scale": 10},
            },
        },
    )
    (scores,) = calibrated.classify([astronaut])
    assert scores["explicit_nudity"] > 0.99 and scores["weapon"] < 0.01  # cosines lie in [-1, 1]
    embedder = registry.image("openclip", {"model_dir": str(clip_dir)})
    assert isinstance(embedder, ImageEmbedder) and embedder.dim == 32
    out = embedder.embed_images([astronaut, astronaut.copy()])
    assert out.shape == (2, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5) and np.allclose(out[0], out[1])
    assert embedder.embed_images([]).shape == (0, 32)


def test_options_are_checked(clip_dir: Path, tmp_path: Path) -> None:
    registry = builtin_registry()
    with pytest.raises(ModelError, match="concepts"):
        registry.create("nsfw", "openclip", {"model_dir": str(clip_dir)})
    with pytest.raises(ModelError, match="non-empty"):
        registry.create("nsfw", "openclip", {"model_dir": str(clip_dir), "concepts": {"x": []}})
    with pytest.raises(ModelError, match="unknown concept"):
        registry.create(
            "nsfw",
            "openclip",
            {"model_dir": str(clip_dir), "concepts": CONCEPTS, "calibration": {"gore": {"bias": 0.2}}},
        )
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "open_clip_config.json").write_text(
        (clip_dir / "open_clip_config.json").read_text()
    )
    with pytest.raises(ModelError, match="no weights"):
        registry.create("nsfw", "openclip", {"model_dir": str(tmp_path / "noweights"), "concepts": CONCEPTS})


def test_concepts_reach_the_findings(clip_dir: Path, astronaut: np.ndarray) -> None:
    options = {
        "model_dir": str(clip_dir),
        "concepts": CONCEPTS,
        "calibration": {"weapon": {"bias": -1.0, "scale": 10}},
    }
    policy = policy_with(
        {"clip": {"adapter": "openclip", "options": options}},
        [{"model": "clip", "labels": {"weapon": {"deny": 0.9}}}],
    )
    result = run_check(policy, [astronaut])
    (fact,) = result.facts.nsfw
    assert fact.adapter == "openclip" and set(fact.scores) == {"explicit_nudity", "weapon"}
    assert result.verdict.decision == "deny"
    assert any("nsfw.clip.weapon" in r.rule for r in result.verdict.reasons)
