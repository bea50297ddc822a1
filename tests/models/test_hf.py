"""Why: `hf` and `hf-text` must load any save_pretrained directory offline, produce the policy's
labels from the model's own, and carry their scores through the gateway into findings — proved
here on a tiny random ViT and a tiny BERT the test builds, against transformers run directly."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from classifiers import ModelError, NsfwClassifier, TextClassifier, builtin_registry
from tests.models.conftest import needs_transformers
from tests.models.pipeline import policy_with, run_check

pytestmark = needs_transformers


def _reference_probs(folder: Path, images: list[np.ndarray]) -> np.ndarray:
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    proc = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
    model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    with torch.inference_mode():
        logits = model(**proc(images=images, return_tensors="pt")).logits
    return logits.softmax(-1).numpy()


def test_image_classifier_loads_and_matches_transformers(
    vit_dir: Path, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    model = builtin_registry().nsfw("hf", {"model_dir": str(vit_dir)})
    assert isinstance(model, NsfwClassifier)
    assert model.labels == ("normal", "nsfw")
    assert model.info.name == "hf" and len(model.info.version) == 16
    images = [astronaut, coffee, np.full((40, 70, 3), 200, np.uint8)]
    got = model.classify(images)
    want = _reference_probs(vit_dir, images)
    for scores, row in zip(got, want, strict=True):
        assert scores["normal"] == pytest.approx(float(row[0]), abs=1e-5)
        assert scores["nsfw"] == pytest.approx(float(row[1]), abs=1e-5)
    assert model.classify([]) == []
    assert model.classify(images[:1]) == [got[0]] or model.classify(images[:1])[0] == pytest.approx(got[0])


def test_label_map_sums_softmax_classes(tmp_path: Path, astronaut: np.ndarray) -> None:
    from tests.models import tiny

    folder = tiny.hf_image_classifier(tmp_path / "vit3", labels=("neutral", "porn", "hentai"))
    registry = builtin_registry()
    plain = registry.nsfw("hf", {"model_dir": str(folder)}).classify([astronaut])[0]
    mapped = registry.nsfw(
        "hf", {"model_dir": str(folder), "label_map": {"explicit": ["porn", "hentai"], "safe": "neutral"}}
    )
    assert mapped.labels == ("explicit", "safe")
    (scores,) = mapped.classify([astronaut])
    assert scores["explicit"] == pytest.approx(plain["porn"] + plain["hentai"], abs=1e-9)
    assert scores["safe"] == pytest.approx(plain["neutral"], abs=1e-9)
    sig = registry.nsfw(
        "hf", {"model_dir": str(folder), "activation": "sigmoid", "label_map": {"x": ["porn", "hentai"]}}
    )
    (s,) = sig.classify([astronaut])
    assert 0.0 <= s["x"] <= 1.0


def test_bad_directories_and_options_fail_loudly(tmp_path: Path, vit_dir: Path) -> None:
    registry = builtin_registry()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="save_pretrained"):
        registry.create("nsfw", "hf", {"model_dir": str(tmp_path / "empty")})
    with pytest.raises(ModelError, match="unknown model label"):
        registry.create("nsfw", "hf", {"model_dir": str(vit_dir), "label_map": {"nsfw": "porn"}})
    with pytest.raises(ModelError, match="activation"):
        registry.create("nsfw", "hf", {"model_dir": str(vit_dir), "activation": "relu"})
    with pytest.raises(ModelError, match="unknown option"):
        registry.create("nsfw", "hf", {"model_dir": str(vit_dir), "treshold": 0.5})


def test_image_classifier_findings_through_the_gateway(vit_dir: Path, astronaut: np.ndarray) -> None:
    """Policy names the adapter with its model_dir -> ModelPool loads it -> the pipeline records its
    scores, adapter name and weights digest; a threshold below every score denies."""
    options = {"model_dir": str(vit_dir), "label_map": {"nsfw": "nsfw"}}
    policy = policy_with(
        {"vit": {"adapter": "hf", "options": options}},
        [{"model": "vit", "labels": {"nsfw": {"deny": 0.01}}}],
    )
    result = run_check(policy, [astronaut])
    (fact,) = result.facts.nsfw
    expected = builtin_registry().nsfw("hf", options)
    assert (fact.model, fact.adapter, fact.model_version) == ("vit", "hf", expected.info.version)
    assert fact.scores["nsfw"] == pytest.approx(expected.classify([astronaut])[0]["nsfw"], abs=1e-4)
    assert result.verdict.decision == "deny"
    assert any(r.rule.endswith("nsfw.vit.nsfw") for r in result.verdict.reasons)
    with pytest.raises(Exception, match="not produced"):
        run_check(
            policy_with(
                {"vit": {"adapter": "hf", "options": options}},
                [{"model": "vit", "labels": {"porn": {"deny": 0.5}}}],
            ),
            [astronaut],
        )


def test_text_classifier_loads_and_matches_transformers(bert_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = builtin_registry().textcls("hf-text", {"model_dir": str(bert_dir)})
    assert isinstance(model, TextClassifier)
    assert model.labels == ("safe", "sexual")
    texts = ["a cup of coffee on a table", "explicit nudity", "Ünïcödé ✨", ""]
    got = model.classify(texts)
    tok = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    ref = AutoModelForSequenceClassification.from_pretrained(bert_dir, local_files_only=True).eval()
    for text, scores in zip(texts, got, strict=True):
        with torch.inference_mode():
            probs = ref(**tok([text], return_tensors="pt")).logits.softmax(-1)[0].numpy()
        assert scores["safe"] == pytest.approx(float(probs[0]), abs=1e-5)
        assert scores["sexual"] == pytest.approx(float(probs[1]), abs=1e-5)
        assert scores["safe"] + scores["sexual"] == pytest.approx(1.0)
    assert model.classify([]) == []
    with pytest.raises(ModelError, match="not one string"):
        model.classify("explicit nudity")  # type: ignore[arg-type]


def test_text_classifier_is_thread_safe(bert_dir: Path) -> None:
    model = builtin_registry().textcls(
        "hf-text", {"model_dir": str(bert_dir), "label_map": {"sexual": "sexual"}}
    )
    texts = ["explicit nudity"] * 3 + ["a cat on a table"] * 3
    expected = model.classify(texts)
    results: list[list[dict[str, float]]] = []
    threads = [threading.Thread(target=lambda: results.append(model.classify(texts))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        assert [g["sexual"] for g in got] == pytest.approx([e["sexual"] for e in expected], abs=1e-5)
