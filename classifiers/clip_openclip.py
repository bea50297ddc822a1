"""Why: a policy sometimes needs a concept no shipped NSFW model knows ("weapon", "blood", a
brand). CLIP scores an image against text, so an admin can add a concept by writing prompts,
with no training. open_clip loads any CLIP checkpoint from a local directory
(`open_clip_config.json` + `open_clip_model.safetensors`, the layout open_clip's own hub export
writes), so weights are never fetched at run time.

Score of a concept = sigmoid(scale × (cos(image, concept) − cos(image, neutral))): the concept's
prompts and the neutral prompts are each averaged into one unit text embedding (prompt
ensembling), and `scale` defaults to the checkpoint's learned logit scale — i.e. the two-way CLIP
softmax "this concept vs. an ordinary photo". A per-concept `calibration: {concept: {bias, scale}}`
replaces it with sigmoid(scale × (cos − bias)) (what `consentgate models calibrate` helps choose).

The same adapter is registered in the "image" family as an image embedder (`embed_images`).
Needs torchvision, so it runs in the extras venv (scripts/install_extras.sh).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, local_model_dir, offline_hub, weights_digest
from classifiers.base import ModelError, ModelInfo

CONFIG = "open_clip_config.json"
CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
DEFAULT_NEUTRAL = ("a photo", "an ordinary photo", "a photo of an everyday scene")
MAX_SCALE = 100.0


def _checkpoint(folder: Path) -> Path:
    for name in CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"openclip: no weights in {folder} (expected one of {', '.join(CHECKPOINTS)})")


def _prompt_map(raw: Any, what: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise ModelError(f"openclip: option {what!r} must map a concept name to a list of prompt texts")
    out: dict[str, tuple[str, ...]] = {}
    for name, prompts in raw.items():
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(name, str) or not name or not isinstance(prompts, Sequence) or not prompts:
            raise ModelError(f"openclip: {what}.{name}: needs a non-empty list of prompt texts")
        if not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ModelError(f"openclip: {what}.{name}: every prompt must be a non-empty string")
        out[name] = tuple(prompts)
    return out


class OpenClipModel:
    """Options: `model_dir` (required), `concepts` ({name: [prompts]}; required in the nsfw
    family), `neutral` (prompts, default a few "ordinary photo" texts), `scale` (default the
    checkpoint's logit scale, at most 100), `calibration` ({concept: {bias, scale}}),
    `batch_size` (default 16)."""

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        name: str = "openclip",
        require_concepts: bool = True,
    ) -> None:
        opts = Options(
            name, options, {"model_dir", "concepts", "neutral", "scale", "calibration", "batch_size"}
        )
        folder = local_model_dir(name, opts)
        concepts = _prompt_map(opts.get("concepts", {}, Mapping), "concepts")
        if require_concepts and not concepts:
            raise ModelError(
                f"{name}: option 'concepts' ({{name: [prompt texts]}}) is required for NSFW scoring"
            )
        neutral = opts.get("neutral", list(DEFAULT_NEUTRAL), (list, tuple))
        self._neutral = _prompt_map({"neutral": neutral}, "neutral")["neutral"]
        self._batch_size = opts.positive_int("batch_size", 16)
        scale_opt = opts.get("scale", None, (int, float, type(None)))
        calibration: Mapping[str, Any] = opts.get("calibration", {}, Mapping)
        unknown = sorted(set(calibration) - set(concepts))
        if unknown:
            raise ModelError(f"{name}: calibration names unknown concept(s) {unknown}")
        self._calibration: dict[str, tuple[float, float]] = {}
        for concept, cal in calibration.items():
            if not isinstance(cal, Mapping) or set(cal) - {"bias", "scale"} or "bias" not in cal:
                raise ModelError(f"{name}: calibration.{concept} must be {{bias: float, scale: float}}")
            self._calibration[concept] = (float(cal["bias"]), float(cal.get("scale", 50.0)))

        config, weights = folder / CONFIG, _checkpoint(folder)
        if not config.is_file():
            raise ModelError(f"{name}: {config} is missing (open_clip's local-dir layout)")
        offline_hub()
        try:
            import open_clip
            import torch
        except ImportError as exc:
            raise ModelError(
                f"{name}: open_clip / torchvision are not importable here ({exc}); "
                "they live in the extras venv (scripts/install_extras.sh)"
            ) from exc
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", device="cpu")
            tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        except Exception as exc:
            raise ModelError(f"{name}: cannot load open_clip model from {folder}: {exc}") from exc
        model.eval()
        self._torch = torch
        self._model = model
        self._preprocess = preprocess
        self.info = ModelInfo(name=name, version=weights_digest([config, weights]))
        learned = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else MAX_SCALE
        self._scale = float(scale_opt) if scale_opt is not None else min(learned, MAX_SCALE)
        self.labels: tuple[str, ...] = tuple(concepts)
        self.concepts = concepts
        with torch.inference_mode():
            self._concept_vecs = (
                np.stack([self._text_vector(tokenizer, concepts[c]) for c in self.labels])
                if concepts
                else np.zeros((0, 1), np.float32)
            )
            self._neutral_vec = self._text_vector(tokenizer, self._neutral)
        self.dim = int(self._neutral_vec.shape[0])

    def _text_vector(self, tokenizer: Any, prompts: Sequence[str]) -> np.ndarray:
        feats = self._model.encode_text(tokenizer(list(prompts)), normalize=True).float().numpy()
        mean = np.asarray(feats, np.float32).mean(axis=0)
        out: np.ndarray = (mean / np.linalg.norm(mean)).astype(np.float32)
        return out

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from PIL import Image

        rows: list[np.ndarray] = []
        for start in range(0, len(images), self._batch_size):
            chunk = [check_rgb(img) for img in images[start : start + self._batch_size]]
            try:
                batch = self._torch.stack([self._preprocess(Image.fromarray(img)) for img in chunk])
                with self._torch.inference_mode():
                    feats = self._model.encode_image(batch, normalize=True).float().numpy()
            except Exception as exc:
                raise ModelError(f"{self.info.name}: inference failed: {exc}") from exc
            rows.append(feats.astype(np.float32))
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        out = np.concatenate(rows)
        return np.ascontiguousarray(out / np.linalg.norm(out, axis=1, keepdims=True), dtype=np.float32)

    def similarities(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw cosines: (images × concepts) and (images,) against the neutral prompts."""
        emb = self.embed_images(images)
        return emb @ self._concept_vecs.T, emb @ self._neutral_vec

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        if not self.labels:
            raise ModelError(f"{self.info.name}: no concepts configured")
        cos, neutral = self.similarities(images)
        out = []
        for row, base in zip(cos, neutral, strict=True):
            scores = {}
            for label, c in zip(self.labels, row, strict=True):
                bias, scale = self._calibration.get(label, (float(base), self._scale))
                scores[label] = _sigmoid(scale * (float(c) - bias))
            out.append(scores)
        return out


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
