"""Why: "load → run → findings" means more than calling an adapter: a policy names the adapter
with its `model_dir`, the gateway's ModelPool loads it (label checks included), the check
pipeline runs it, and the facts and the verdict carry its scores, name and weights digest. This
helper drives exactly that path for the tests of each optional adapter."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def policy_with(
    models: dict[str, Any], checks: list[dict[str, Any]], face_model: dict[str, Any] | None = None
) -> Any:
    from gateway.policy.schema import Policy

    return Policy.model_validate(
        {
            "name": "models-test",
            "models": models,
            "consent": {"face_model": face_model or {"adapter": "fake"}},
            "uses": {"txt2img": {"output": {"nsfw": checks, "faces": {"unmatched": "allow"}}}},
        }
    )


def run_check(policy: Any, images: list[np.ndarray], registry: Any = None) -> Any:
    """CheckResult of the txt2img output check of `images` under `policy` (no consent registry)."""
    from classifiers.registry import builtin_registry
    from gateway.media import MediaLimits, decode_image
    from gateway.metrics import Metrics
    from gateway.pipeline.check import CheckInput
    from gateway.pipeline.check import CheckStage as CheckPipeline
    from gateway.pipeline.ports import EmptyConsent
    from gateway.policy.runtime import ModelPool

    pool = ModelPool(registry or builtin_registry(), threads=2)
    runtime = pool.build(policy)
    decoded = [decode_image(png(img), MediaLimits(), index=i) for i, img in enumerate(images)]
    pipeline = CheckPipeline(
        EmptyConsent(), Metrics(), clock=lambda: datetime.now(UTC), model_timeout_s=120.0
    )
    return asyncio.run(pipeline.run(runtime, CheckInput("output", "txt2img", "t", None, None, decoded)))
