"""The ``watermark`` model family: image marks registered by name, like the classifier families.

Why: a better mark arrives every few months (TrustMark, WAM, the next one), and a mark that is
already out in the world must stay readable after the default changes. So marks are
interchangeable adapters behind the small ``Watermarker`` Protocol (``gateway.provenance.wmbase``),
registered explicitly by name (no scanning, no import-time side effects: a factory imports its
module only when called), and every release records the ``method`` and its ``version`` in the
decision record and in the C2PA ``c2pa.soft-binding`` assertion, so a copy can be read with the
method (and version) that marked it.

A registration says where the adapter's weights come from: ``package`` (shipped inside a PyPI
package or computed: the default install) or ``local`` (a folder the operator points
``model_dir`` at; never downloaded). ``tests/provenance/test_marks.py`` holds the contract test
class every registered method passes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import PayloadCodec
from gateway.provenance.wmbase import Watermarker

__all__ = [
    "MarkRegistry", "MarkSpec", "UnknownMarkError", "builtin_marks", "codec_for", "make_watermarker",
    "new_watermark_id",
]

MarkFactory = Callable[[Mapping[str, Any]], Watermarker]


@dataclass(frozen=True)
class MarkSpec:
    """What a registration says about a mark besides its factory."""

    name: str
    version: str
    codec: PayloadCodec
    weights: Literal["package", "local"] = "package"
    summary: str = ""


class UnknownMarkError(WatermarkError, LookupError):
    """A method name that is not registered; the message lists the registered ones."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown watermark method {name!r}; registered methods: {', '.join(known) or '(none)'}")


class MarkRegistry:
    """name -> (spec, factory(options) -> Watermarker). Registration is explicit and unique."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[MarkSpec, MarkFactory]] = {}

    def register(self, spec: MarkSpec, factory: MarkFactory) -> None:
        if spec.name in self._entries:
            raise ValueError(f"watermark method {spec.name!r} is already registered")
        self._entries[spec.name] = (spec, factory)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def spec(self, name: str) -> MarkSpec:
        if name not in self._entries:
            raise UnknownMarkError(name, self.names())
        return self._entries[name][0]

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> Watermarker:
        """Build the adapter; a missing optional package or weights file is a ``WatermarkError``."""
        spec = self.spec(name)
        marker = self._entries[name][1](dict(options or {}))
        if marker.method != spec.name or marker.version != spec.version:
            raise WatermarkError(f"{name}: adapter reports {marker.method} v{marker.version}, "
                                 f"registered as {spec.name} v{spec.version}")
        return marker


def _dwtdctsvd(options: Mapping[str, Any]) -> Watermarker:
    from gateway.provenance.watermark import DwtDctSvdWatermarker

    return DwtDctSvdWatermarker(**options)


def _rivagan(options: Mapping[str, Any]) -> Watermarker:
    from gateway.provenance.rivagan import RivaGanWatermarker

    return RivaGanWatermarker(**options)


def _tilesync(options: Mapping[str, Any]) -> Watermarker:
    from gateway.provenance.tilesync import TileSyncWatermarker

    return TileSyncWatermarker(**options)


def _trustmark(options: Mapping[str, Any]) -> Watermarker:
    from gateway.provenance.trustmark import TrustMarkWatermarker

    return TrustMarkWatermarker(**options)


def builtin_marks() -> MarkRegistry:
    """Every built-in mark, listed by hand."""
    from gateway.provenance.payload import DWT_PAYLOAD, MARK_PAYLOAD, RIVAGAN_PAYLOAD

    registry = MarkRegistry()
    registry.register(MarkSpec("tileSync", "1", MARK_PAYLOAD, summary="tiled spread spectrum with "
                               "self-synchronisation (the default); re-encodes, resizes, crops, small "
                               "rotations"), _tilesync)
    registry.register(MarkSpec("dwtDctSvd", "1", DWT_PAYLOAD, summary="DWT-DCT-SVD (invisible-watermark, "
                               "vectorised); JPEG q75 and 0.5x resize, not crops"), _dwtdctsvd)
    registry.register(MarkSpec("trustMark", "1", MARK_PAYLOAD, weights="local", summary="Adobe TrustMark's ONNX "
                               "encoder/decoder from a local folder (model_dir); never downloaded"), _trustmark)
    registry.register(MarkSpec("rivaGan", "1", RIVAGAN_PAYLOAD, summary="invisible-watermark's learned "
                               "rivaGan (ONNX weights in the wheel); 32 bits, ~1 s"), _rivagan)
    return registry


@functools.cache
def _builtin() -> MarkRegistry:
    """The built-in registry, built once (read-only after that)."""
    return builtin_marks()


def codec_for(method: str) -> PayloadCodec:
    """The payload codec of a registered method (``UnknownMarkError`` otherwise)."""
    return _builtin().spec(method).codec


def new_watermark_id(method: str) -> int:
    """A fresh random id in ``method``'s id space (e.g. 40 bits for dwtDctSvd, 24 for rivaGan)."""
    return codec_for(method).new_id()


def make_watermarker(method: str, **options: Any) -> Watermarker:
    """Build the watermarker a policy names, e.g. ``make_watermarker("dwtDctSvd", strength=36)``."""
    return _builtin().create(method, options)
