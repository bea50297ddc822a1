"""Why: new NSFW and prompt classifiers appear on model hubs every month as `transformers`
checkpoints. These adapters load any image-classification (`hf`, family nsfw) or
text-classification (`hf-text`, family "textcls") model directory written by `save_pretrained`,
with `local_files_only=True` and the hub switched off, and map the model's own labels to the
labels a policy thresholds.

Label mapping (`label_map: {policy_label: model_label | [model_labels]}`): a policy label's score is
the sum of its model labels' probabilities for a softmax model (mutually exclusive classes, e.g.
"porn" + "hentai" -> "explicit") or their maximum for a sigmoid (multi-label) model. Without a
map the policy labels are the model's own `id2label` names. `activation` follows the model's
`problem_type` unless set.

Prompt classification is its own family ("textcls", Protocol `TextClassifier`) rather than a reuse
of the embedder family: an embedder returns vectors compared against policy concepts, a classifier
returns label scores compared against thresholds — two contracts a policy uses differently.

transformers needs no torchvision for these (it falls back to its PIL image processors), so both
run in the default venv.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, local_model_dir, offline_hub, weights_digest
from classifiers.base import ModelError, ModelInfo

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _weights(folder: Path, name: str) -> list[Path]:
    files = [folder / "config.json"]
    found = [folder / f for f in WEIGHT_FILES if (folder / f).is_file()]
    shards = sorted(folder.glob("model-*.safetensors"))
    if not files[0].is_file() or not (found or shards):
        raise ModelError(f"{name}: {folder} is not a save_pretrained directory (config.json + weights)")
    return files + (found[:1] or shards)


class _Mapped:
    """Shared label-mapping logic over a model's `id2label`."""

    def _setup_labels(self, name: str, opts: Options, config: Any) -> None:
        id2label = {int(k): str(v) for k, v in dict(config.id2label).items()}
        if not id2label:
            raise ModelError(f"{name}: the model config has no id2label")
        self.model_labels = tuple(id2label[i] for i in sorted(id2label))
        default = (
            "sigmoid" if getattr(config, "problem_type", None) == "multi_label_classification" else "softmax"
        )
        self._activation = opts.choice("activation", default, ("softmax", "sigmoid"))
        raw: Mapping[str, Any] = opts.get("label_map", {}, Mapping)
        mapping: dict[str, list[int]] = {}
        index = {label: i for i, label in enumerate(self.model_labels)}
        for policy_label, targets in (raw or {lb: lb for lb in self.model_labels}).items():
            listed = [targets] if isinstance(targets, str) else list(targets)
            unknown = [t for t in listed if t not in index]
            if not listed or unknown:
                raise ModelError(
                    f"{name}: label_map.{policy_label}: unknown model label(s) {unknown or listed}; "
                    f"the model's labels: {', '.join(self.model_labels)}"
                )
            mapping[str(policy_label)] = [index[t] for t in listed]
        self._mapping = mapping
        self.labels: tuple[str, ...] = tuple(mapping)

    def _scores(self, logits: np.ndarray) -> list[dict[str, float]]:
        logits = logits.astype(np.float64)
        if self._activation == "softmax":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            combine: Any = np.sum
        else:
            probs = 1.0 / (1.0 + np.exp(-logits))
            combine = np.max
        return [
            {label: float(np.clip(combine(row[idx]), 0.0, 1.0)) for label, idx in self._mapping.items()}
            for row in probs
        ]


def _import_transformers(name: str) -> Any:
    offline_hub()
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelError(f"{name}: transformers / torch are not importable: {exc}") from exc
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return torch, transformers


class HfImageClassifier(_Mapped):
    """Options: `model_dir` (required), `label_map`, `activation` ("softmax" | "sigmoid"),
    `batch_size` (default 16), `backend` (the image processor's: "pil", the default, gives the same
    numbers with or without torchvision; "torchvision" where it is installed)."""

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "hf") -> None:
        opts = Options(name, options, {"model_dir", "label_map", "activation", "batch_size", "backend"})
        folder = local_model_dir(name, opts)
        files = _weights(folder, name)
        backend = opts.choice("backend", "pil", ("pil", "torchvision"))
        if not (folder / "preprocessor_config.json").is_file():
            raise ModelError(
                f"{name}: {folder}/preprocessor_config.json is missing (save the image processor too)"
            )
        self._batch_size = opts.positive_int("batch_size", 16)
        torch, transformers = _import_transformers(name)
        try:
            self._processor = transformers.AutoImageProcessor.from_pretrained(
                folder, local_files_only=True, backend=backend
            )
            self._model = transformers.AutoModelForImageClassification.from_pretrained(
                folder, local_files_only=True
            ).eval()
        except Exception as exc:
            raise ModelError(
                f"{name}: cannot load an image-classification model from {folder}: {exc}"
            ) from exc
        self._torch = torch
        self._setup_labels(name, opts, self._model.config)
        self.info = ModelInfo(name=name, version=weights_digest(files))

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(images), self._batch_size):
            chunk = [check_rgb(img) for img in images[start : start + self._batch_size]]
            chunk = [img if img.flags.writeable else img.copy() for img in chunk]
            try:
                inputs = self._processor(images=chunk, return_tensors="pt")
                with self._torch.inference_mode():
                    logits = self._model(**inputs).logits.float().numpy()
            except Exception as exc:
                raise ModelError(f"{self.info.name}: inference failed: {exc}") from exc
            out += self._scores(logits)
        return out


class HfTextClassifier(_Mapped):
    """Options: `model_dir` (required), `label_map`, `activation`, `max_length` (default 256 tokens),
    `batch_size` (default 32). Tokenizers are not thread-safe: `classify` holds a lock."""

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "hf-text") -> None:
        opts = Options(name, options, {"model_dir", "label_map", "activation", "max_length", "batch_size"})
        folder = local_model_dir(name, opts)
        files = _weights(folder, name)
        self._max_length = opts.positive_int("max_length", 256)
        self._batch_size = opts.positive_int("batch_size", 32)
        torch, transformers = _import_transformers(name)
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model = transformers.AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True
            ).eval()
        except Exception as exc:
            raise ModelError(f"{name}: cannot load a text-classification model from {folder}: {exc}") from exc
        self._torch = torch
        self._lock = threading.Lock()
        self._setup_labels(name, opts, self._model.config)
        self.info = ModelInfo(name=name, version=weights_digest(files))

    def classify(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if isinstance(texts, str):
            raise ModelError(f"{self.info.name}: classify takes a sequence of texts, not one string")
        out: list[dict[str, float]] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            try:
                with self._lock:
                    inputs = self._tokenizer(
                        chunk, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
                    )
                with self._torch.inference_mode():
                    logits = self._model(**inputs).logits.float().numpy()
            except Exception as exc:
                raise ModelError(f"{self.info.name}: inference failed: {exc}") from exc
            out += self._scores(logits)
        return out
