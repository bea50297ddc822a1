"""Why: a policy names models; the runtime turns those names into loaded adapters once (models
load at startup, not per request) and shares them across policy reloads, so a reload that keeps
the same models costs nothing and one that names a new model loads it before going live.

It sits in the policy layer, under the pipeline: validating a bundle (`PolicyManager`) loads its
models, and the pipeline only reads the `PolicyRuntime` of the active bundle."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifiers.base import FaceAnalyzer, NsfwClassifier, NsfwWithFaces, PerceptualHasher, TextEmbedder, VoiceEmbedder
from classifiers.registry import ModelRegistry
from gateway.policy.errors import PolicyError
from gateway.policy.parse import dotted, report
from gateway.policy.schema import ModelSpec, Policy

__all__ = ["ModelPool", "PolicyRuntime"]


@dataclass
class PolicyRuntime:
    """The loaded models one policy needs, with the concept examples already embedded."""

    policy: Policy
    nsfw: dict[str, NsfwClassifier]
    face: FaceAnalyzer
    hasher: PerceptualHasher
    text: TextEmbedder | None
    concept_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    timeouts: dict[str, float | None] = field(default_factory=dict)
    voice: VoiceEmbedder | None = None  # consent.voice_model (None: the policy takes no audio)


class ModelPool:
    """Creates adapters through the explicit registry and caches them by (family, adapter, options)."""

    def __init__(self, registry: ModelRegistry, *, threads: int = 2):
        self.registry = registry
        self.threads = threads
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, family: str, spec: ModelSpec) -> Any:
        """The adapter of `family` the spec names (created once per adapter and options)."""
        options = dict(spec.options)
        if "threads" not in options and self.registry.describe(family, spec.adapter).takes_threads:
            options["threads"] = self.threads  # the deployment's model_threads, unless the policy sets it
        key = json.dumps([family, spec.adapter, options], sort_keys=True, default=str)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self.registry.create(family, spec.adapter, options)
            return self._cache[key]

    # Typed per family (the registry checked each adapter against its family's Protocol).
    def nsfw(self, spec: ModelSpec) -> NsfwClassifier:
        adapter: NsfwClassifier = self.get("nsfw", spec)
        return adapter

    def face(self, spec: ModelSpec) -> FaceAnalyzer:
        adapter: FaceAnalyzer = self.get("face", spec)
        return adapter

    def hasher(self, spec: ModelSpec) -> PerceptualHasher:
        adapter: PerceptualHasher = self.get("hash", spec)
        return adapter

    def text(self, spec: ModelSpec) -> TextEmbedder:
        adapter: TextEmbedder = self.get("text", spec)
        return adapter

    def voice(self, spec: ModelSpec) -> VoiceEmbedder:
        adapter: VoiceEmbedder = self.get("voice", spec)
        return adapter

    def loaded(self) -> list[dict[str, str]]:
        with self._lock:
            return [
                {"name": m.info.name, "version": m.info.version} for m in self._cache.values()
            ]

    def build(self, policy: Policy, source: str = "policy",
              locate: Callable[[tuple[str | int, ...]], str] | None = None) -> PolicyRuntime:
        """Load every model the policy needs and check that each label it thresholds exists.
        Errors read `FILE:LINE: field.path: message` when `locate` maps a field path to the
        FILE:LINE of its value (`PolicyBundle.locator`), else `SOURCE: field.path: message`;
        one mistake reached through several paths (a YAML anchor) is reported once."""
        where = locate or (lambda _loc: source)
        issues: list[tuple[str, str, str]] = []

        def issue(loc: tuple[str | int, ...], message: str) -> None:
            issues.append((where(loc), dotted(loc), message))

        nsfw: dict[str, NsfwClassifier] = {}
        for alias, spec in policy.models.items():
            try:
                nsfw[alias] = self.nsfw(spec)
            except Exception as exc:  # noqa: BLE001 - any load failure refuses the policy
                issue(("models", alias, "adapter"), f"cannot load adapter {spec.adapter!r}: {exc}")
        for use, up in policy.uses.items():
            for stage_name in ("input", "output"):
                stage = getattr(up, stage_name)
                if stage is None:
                    continue
                for index, check in enumerate(stage.nsfw):
                    model = nsfw.get(check.model)
                    if model is None:
                        continue
                    for label in sorted(set(check.labels) - set(model.labels)):
                        issue(("uses", use, stage_name, "nsfw", index, "labels", label),
                              f"label {label!r} is not produced by adapter {model.info.name!r} "
                              f"(its labels: {', '.join(model.labels)})")
        for index, alias in enumerate(policy.consent.face_proposals):
            proposer = nsfw.get(alias)
            if proposer is not None and not isinstance(proposer, NsfwWithFaces):
                issue(("consent", "face_proposals", index),
                      f"model {alias!r} (adapter {proposer.info.name!r}) does not locate faces")
        face: FaceAnalyzer | None = None
        hasher: PerceptualHasher | None = None
        text: TextEmbedder | None = None
        try:
            face = self.face(policy.consent.face_model)
        except Exception as exc:  # noqa: BLE001
            issue(("consent", "face_model"), f"cannot load: {exc}")
        try:
            hasher = self.hasher(policy.hash_list.model)
        except Exception as exc:  # noqa: BLE001
            issue(("hash_list", "model"), f"cannot load: {exc}")
        voice: VoiceEmbedder | None = None
        if policy.consent.voice_model is not None:
            try:
                voice = self.voice(policy.consent.voice_model)
            except Exception as exc:  # noqa: BLE001
                issue(("consent", "voice_model"), f"cannot load: {exc}")
        concept_vectors: dict[str, np.ndarray] = {}
        if policy.prompt.text_model is not None:
            try:
                text = self.text(policy.prompt.text_model)
                for concept in policy.prompt.concepts:
                    concept_vectors[concept.id] = np.asarray(text.embed(concept.examples), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001
                issue(("prompt", "text_model"), f"cannot load: {exc}")
        if issues or face is None or hasher is None:
            raise PolicyError(report(issues))
        timeouts = {alias: spec.timeout_s for alias, spec in policy.models.items()}
        return PolicyRuntime(policy, nsfw, face, hasher, text, concept_vectors, timeouts, voice)
