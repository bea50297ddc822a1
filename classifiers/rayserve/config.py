"""Why: which models run on Ray, with how many replicas, CPUs, GPUs and what batching, is an
operator's decision per model family, written once in a YAML file (`deploy/ray/models.yaml`) and
read the same way by the local deploy (`python -m classifiers.rayserve deploy`) and by the
KubeRay `RayService` (whose `serveConfigV2` is generated from it). Reading it is strict: an
unknown key, family or adapter stops the deploy with a message naming it.

    families:
      nsfw:                                  # one Serve application + deployment per family
        models: [{adapter: nudenet}, {adapter: opennsfw, options: {threads: 1}}]
        replicas: 1                          # or autoscaling: {min_replicas, max_replicas, target_ongoing_requests}
        num_cpus: 1                          # per replica; also the ONNX thread count when options omit it
        num_gpus: 0                          # fractions share a GPU between replicas
        memory_mb: 1024                      # optional: Ray schedules and caps replicas by it
        max_batch_size: 16                   # @serve.batch: images (or texts) per model call
        batch_wait_timeout_s: 0.005          # how long a batch waits to fill
        max_ongoing_requests: 64             # per replica
        max_queued_requests: 256             # per caller; beyond it the proxy answers 503 (saturation)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from classifiers.base import ModelError
from classifiers.registry import FAMILIES, ModelRegistry

# Families a worker can serve (the ones with a remote adapter in classifiers.rayserve.client).
SERVABLE = ("nsfw", "face", "text", "hash", "voice")
IMPORT_PATH = "classifiers.rayserve.worker:build"
# Adapter options that tune how a model runs, not what it answers: they may differ between the
# policy and the deployment without changing a finding.
RUNTIME_OPTIONS = frozenset({"threads", "device", "half", "batch_size"})

_FAMILY_KEYS = {
    "models", "replicas", "autoscaling", "num_cpus", "num_gpus", "memory_mb", "max_batch_size",
    "batch_wait_timeout_s", "max_ongoing_requests", "max_queued_requests",
}
_AUTOSCALING_KEYS = {"min_replicas", "max_replicas", "target_ongoing_requests", "initial_replicas"}


class ConfigError(ModelError, ValueError):
    """The workers file is invalid; the message names the key."""


@dataclass(frozen=True)
class ModelEntry:
    adapter: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyConfig:
    family: str
    models: tuple[ModelEntry, ...]
    replicas: int = 1
    autoscaling: dict[str, int | float] | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.005
    max_ongoing_requests: int = 64
    max_queued_requests: int = -1

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options(...)` (and the RayService's deployments)."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        if self.memory_mb:
            actor["memory"] = self.memory_mb * 1024 * 1024
        out: dict[str, Any] = {
            "name": self.family,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "user_config": {"max_batch_size": self.max_batch_size,
                            "batch_wait_timeout_s": self.batch_wait_timeout_s},
        }
        if self.autoscaling is not None:
            out["autoscaling_config"] = dict(self.autoscaling)
        else:
            out["num_replicas"] = self.replicas
        return out

    def args(self) -> dict[str, Any]:
        """The application's builder arguments (JSON-able: a RayService carries them as YAML)."""
        return {
            "family": self.family,
            "models": [{"adapter": m.adapter, "options": dict(m.options)} for m in self.models],
            "deployment": self.deployment_options(),
        }


@dataclass(frozen=True)
class WorkersConfig:
    families: dict[str, FamilyConfig]

    def applications(self) -> list[dict[str, Any]]:
        """Serve applications as a Serve config file (and a RayService's serveConfigV2) lists them."""
        return [
            {"name": fam.family, "route_prefix": f"/{fam.family}", "import_path": IMPORT_PATH, "args": fam.args()}
            for fam in self.families.values()
        ]

    def hosted(self) -> set[tuple[str, str]]:
        return {(f.family, m.adapter) for f in self.families.values() for m in f.models}


def _number(where: str, value: object, kind: type, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{where} must be an integer, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{where} must be >= {minimum}, not {value!r}")
    return kind(value)


def parse_family(family: str, raw: Mapping[str, Any], registry: ModelRegistry) -> FamilyConfig:
    where = f"families.{family}"
    if family not in SERVABLE:
        raise ConfigError(f"{where}: family {family!r} cannot run on Ray; servable families: {', '.join(SERVABLE)}")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    unknown = sorted(set(raw) - _FAMILY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_FAMILY_KEYS)}")
    if family not in FAMILIES:
        raise ConfigError(f"{where}: this install has no {family!r} model family")
    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise ConfigError(f"{where}.models must be a non-empty list of {{adapter, options}}")
    models: list[ModelEntry] = []
    for i, item in enumerate(models_raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("adapter"), str):
            raise ConfigError(f"{where}.models[{i}] needs an 'adapter' name")
        extra = sorted(set(item) - {"adapter", "options"})
        if extra:
            raise ConfigError(f"{where}.models[{i}]: unknown key(s) {extra}")
        adapter = item["adapter"]
        if not registry.has(family, adapter):
            raise ConfigError(f"{where}.models[{i}]: unknown {family} adapter {adapter!r}; "
                              f"registered: {', '.join(registry.names(family))}")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.models[{i}].options must be a mapping")
        if any(m.adapter == adapter for m in models):
            raise ConfigError(f"{where}.models: adapter {adapter!r} is listed twice")
        models.append(ModelEntry(adapter, dict(options)))
    autoscaling = raw.get("autoscaling")
    if autoscaling is not None:
        if not isinstance(autoscaling, Mapping) or set(autoscaling) - _AUTOSCALING_KEYS:
            raise ConfigError(f"{where}.autoscaling takes only {sorted(_AUTOSCALING_KEYS)}")
        autoscaling = {k: _number(f"{where}.autoscaling.{k}", v, float if k == "target_ongoing_requests" else int,
                                  0 if k == "min_replicas" else 1) for k, v in autoscaling.items()}
        if "replicas" in raw:
            raise ConfigError(f"{where}: set either replicas or autoscaling, not both")
    queued = raw.get("max_queued_requests", -1)
    if queued != -1:
        queued = _number(f"{where}.max_queued_requests", queued, int, 1)
    return FamilyConfig(
        family=family,
        models=tuple(models),
        replicas=_number(f"{where}.replicas", raw.get("replicas", 1), int, 1),
        autoscaling=autoscaling,
        num_cpus=_number(f"{where}.num_cpus", raw.get("num_cpus", 1.0), float, 0),
        num_gpus=_number(f"{where}.num_gpus", raw.get("num_gpus", 0.0), float, 0),
        memory_mb=None if raw.get("memory_mb") is None else _number(f"{where}.memory_mb", raw["memory_mb"], int, 64),
        max_batch_size=_number(f"{where}.max_batch_size", raw.get("max_batch_size", 8), int, 1),
        batch_wait_timeout_s=_number(f"{where}.batch_wait_timeout_s", raw.get("batch_wait_timeout_s", 0.005),
                                     float, 0),
        max_ongoing_requests=_number(f"{where}.max_ongoing_requests", raw.get("max_ongoing_requests", 64), int, 1),
        max_queued_requests=queued,
    )


def parse_config(raw: object, registry: ModelRegistry) -> WorkersConfig:
    if not isinstance(raw, Mapping) or set(raw) != {"families"} or not isinstance(raw["families"], Mapping):
        raise ConfigError("a workers file holds exactly one key, 'families' (a mapping of family -> settings)")
    if not raw["families"]:
        raise ConfigError("families: at least one family")
    return WorkersConfig({str(f): parse_family(str(f), v, registry) for f, v in raw["families"].items()})


def load_config(path: Path, registry: ModelRegistry) -> WorkersConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_config(raw, registry)


def comparable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options that change what a model answers (RUNTIME_OPTIONS left out)."""
    return {k: v for k, v in options.items() if k not in RUNTIME_OPTIONS}
