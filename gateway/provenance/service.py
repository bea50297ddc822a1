"""Why: an approved render leaves the gateway only marked and signed, traceable to the decision
that let it out. `ProvenanceService` is the edge that carries out a verdict's obligations — on an
image: blur, watermark (id reserved in the database first), re-encode in the client's format,
C2PA-sign; on a video (whose frames `gateway.video` marks during its pass): reserve the id, sign
the MP4, record the id — and the reverse path, `inspect`: C2PA state, the watermark payload (also
on stripped or re-encoded copies) and the decision it leads to. It implements the pipeline's
`Releaser` port; every failure is a `WatermarkError` or `SigningError` (gateway.provenance.errors),
so the caller knows which stage failed without reading the message."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from classifiers.base import PerceptualHasher
from gateway.media import encode_image
from gateway.provenance.blur import blur_regions
from gateway.provenance.c2pa_sign import C2paSigner, ReleaseClaim, SignedMedia, SoftwareAgent, read_manifest
from gateway.provenance.errors import ProvenanceError, SigningError, WatermarkError
from gateway.provenance.keys import PkiPaths, init_dev_pki
from gateway.provenance.marks import make_watermarker
from gateway.provenance.models import (
    WatermarkRecord,
    lookup_watermark,
    pdq_distance,
    record_watermark,
    reserve_watermark_id,
)
from gateway.provenance.wmbase import Watermarker
from gateway.settings import Settings

__all__ = ["ProvenanceFaults", "ProvenanceService", "ReleasedImage"]

PDQ_SAME_IMAGE = 60  # bits: at most this far from the hash recorded at release is the same render

DEFAULT_STRENGTH = {"tileSync": 1.0, "dwtDctSvd": 36.0, "rivaGan": 1.0, "trustMark": 1.0}


@dataclass(frozen=True)
class ReleasedImage:
    """A marked, signed image ready to leave, and what the record says about it."""

    data: bytes
    mime: str
    media_index: int
    sha256: str
    manifest_digest: str | None = None
    watermark_id: str | None = None  # "method:id"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: redact, watermark, encode, sign
    watermark_version: str | None = None  # the mark's version, recorded beside "method:id"


@dataclass
class ProvenanceFaults:
    """Fault hooks for the failure table: break watermarking or signing on demand."""

    watermark_fails: bool = False
    sign_fails: bool = False


@dataclass
class ProvenanceService:
    engine: Engine
    signer: C2paSigner
    trust_anchors_pem: bytes
    pki: PkiPaths
    hasher: PerceptualHasher | None = None
    faults: ProvenanceFaults = field(default_factory=ProvenanceFaults)
    mark_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method, e.g. trustMark model_dir
    _watermarkers: dict[tuple[str, float], Watermarker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings, engine: Engine, c2pa_dir: Path) -> ProvenanceService:
        pki = init_dev_pki(c2pa_dir)
        chain = Path(settings.extra.get("c2pa_cert_chain", pki.signing_cert_chain))
        key = Path(settings.extra.get("c2pa_key", pki.signing_key))
        anchors = Path(settings.extra.get("c2pa_trust_anchors", pki.root_cert)).read_bytes()
        options: dict[str, dict[str, Any]] = {}
        if settings.extra.get("trustmark_model_dir"):  # TrustMark's ONNX weights, placed by the operator
            options["trustMark"] = {"model_dir": str(settings.extra["trustmark_model_dir"])}
        return cls(engine, C2paSigner.from_files(chain, key), anchors, pki, mark_options=options)

    def watermarker(self, method: str, strength: float = 1.0) -> Watermarker:
        key = (method, float(strength))
        with self._lock:
            if key not in self._watermarkers:
                options = dict(self.mark_options.get(method, {}))
                if method != "rivaGan":
                    options["strength"] = DEFAULT_STRENGTH.get(method, 1.0) * strength
                self._watermarkers[key] = make_watermarker(method, **options)
            return self._watermarkers[key]

    def release_image(
        self,
        rgb: np.ndarray,
        mime: str,
        *,
        media_index: int,
        decision_id: str,
        policy_digest: str,
        grant_ids: list[str],
        obligations: dict[str, Any],
        software_agent: dict[str, Any] | None = None,
    ) -> ReleasedImage:
        """Blur → watermark → encode → sign → record the watermark id. Raises WatermarkError (blur,
        mark, encode, id bookkeeping) or SigningError; the caller then denies and releases nothing."""
        wm = obligations.get("watermark")
        wm_id: int | None = None
        method: str | None = None
        version = "1"
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        try:
            pixels = rgb
            blur = [b["bbox"] for b in obligations.get("blur", []) if b.get("media_index") == media_index]
            if blur:
                pixels = blur_regions(pixels, blur)
                timings["redact"], clock = time.perf_counter() - clock, time.perf_counter()
            if wm is not None:
                if self.faults.watermark_fails:
                    raise WatermarkError("watermark failed (fault injected)")
                method = str(wm["method"])
                with Session(self.engine) as session:
                    wm_id = reserve_watermark_id(session, method=method, decision_id=decision_id).wm_id
                marker = self.watermarker(method, wm.get("strength", 1.0))
                version = marker.version
                pixels = marker.embed(pixels, wm_id)
                timings["watermark"], clock = time.perf_counter() - clock, time.perf_counter()
            data = encode_image(np.ascontiguousarray(pixels, dtype=np.uint8), mime)
            timings["encode"], clock = time.perf_counter() - clock, time.perf_counter()
        except ProvenanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here is the watermark stage's
            raise WatermarkError(f"{type(exc).__name__}: {exc}") from exc
        manifest_digest = None
        if obligations.get("sign"):
            agent = None
            if software_agent:
                agent = SoftwareAgent(str(software_agent.get("name")), software_agent.get("version"))
            signed = self.sign(data, mime, ReleaseClaim(
                decision_id=decision_id, policy_digest=policy_digest, grant_ids=tuple(grant_ids),
                watermark_id=wm_id, watermark_method=method, watermark_version=version,
                software_agent=agent,
                title=f"consentgate release {decision_id}",
            ))
            data, manifest_digest = signed.data, signed.manifest_digest
            timings["sign"] = time.perf_counter() - clock
        if wm_id is not None and method is not None:
            try:
                image_pdq = self.hasher.hashes(pixels)[0] if self.hasher is not None else None
                with Session(self.engine) as session:
                    record_watermark(session, method=method, wm_id=wm_id, decision_id=decision_id,
                                     manifest_digest=manifest_digest, image_pdq=image_pdq)
            except Exception as exc:  # noqa: BLE001 - an unrecorded id cannot lead back: withhold
                raise WatermarkError(f"{type(exc).__name__}: {exc}") from exc
        return ReleasedImage(data, mime, media_index, hashlib.sha256(data).hexdigest(), manifest_digest,
                             f"{method}:{wm_id}" if wm_id is not None else None, timings,
                             version if wm_id is not None else None)

    def sign(self, data: bytes, mime: str, claim: ReleaseClaim) -> SignedMedia:
        """C2PA-sign `data`; SigningError on any failure (fault hook included)."""
        if self.faults.sign_fails:
            raise SigningError("C2PA signing failed (fault injected)")
        try:
            return self.signer.sign(data, mime, claim)
        except SigningError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SigningError(f"{type(exc).__name__}: {exc}") from exc

    # -- the video side: gateway.video marks the frames; ids and signatures are kept here ---------
    def reserve_watermark_id(self, method: str, decision_id: str, draw: Callable[[str], int] | None = None) -> int:
        """Reserve a fresh id of `method` for `decision_id` (before the frames are marked)."""
        try:
            with Session(self.engine) as session:
                if draw is None:
                    row = reserve_watermark_id(session, method=method, decision_id=decision_id)
                else:
                    row = reserve_watermark_id(session, method=method, decision_id=decision_id, draw=draw)
                return int(row.wm_id)
        except Exception as exc:  # noqa: BLE001
            raise WatermarkError(f"{type(exc).__name__}: {exc}") from exc

    def finish_video(self, data: bytes, mime: str, *, claim: ReleaseClaim, sign: bool,
                     watermark: tuple[str, int] | None) -> SignedMedia:
        """After the marking pass: sign the file (when the verdict says so) and record the mark's
        id with the manifest digest. WatermarkError / SigningError on failure."""
        if watermark is not None and self.faults.watermark_fails:
            raise WatermarkError("watermark failed (fault injected)")
        signed = self.sign(data, mime, claim) if sign else SignedMedia(data, "")
        if watermark is not None:
            method, wm_id = watermark
            try:
                with Session(self.engine) as session:
                    record_watermark(session, method=method, wm_id=wm_id, decision_id=claim.decision_id,
                                     manifest_digest=signed.manifest_digest or None)
            except Exception as exc:  # noqa: BLE001
                raise WatermarkError(f"{type(exc).__name__}: {exc}") from exc
        return signed

    def discard_watermarks(self, method: str, decision_id: str) -> None:
        """Drop the ids reserved for a decision that released nothing."""
        with Session(self.engine) as session:
            for row in session.exec(select(WatermarkRecord).where(
                    col(WatermarkRecord.method) == method, col(WatermarkRecord.decision_id) == decision_id)):
                session.delete(row)
            session.commit()

    def inspect(self, data: bytes, mime: str, rgb: np.ndarray | None,
                release_size: Callable[[str], tuple[int, int] | None] | None = None) -> dict[str, Any]:
        """C2PA report + watermark detection + the decision ids they point to. ``release_size``
        gives (width, height) of a decision's released image (from its audit record), so a
        cropped, resized or rotated copy can be put back in place before its perceptual hash is
        compared with the one recorded at release."""
        report = read_manifest(data, mime, self.trust_anchors_pem)
        out: dict[str, Any] = {
            "c2pa": {
                "state": report.state,
                "validation_errors": report.validation_errors,
                "assertions": sorted(report.assertions),
                "decision": report.decision,
                "software_agent": report.software_agent,
                "soft_binding": report.soft_binding,
            },
            "watermark": None,
            "decision_ids": [],
        }
        decision_ids: list[str] = []
        if report.decision and report.state in ("Trusted", "Valid"):
            decision_ids.append(str(report.decision.get("decision_id")))
        if rgb is not None:
            tried: list[str] = []
            for method in self._methods_in_use():
                tried.append(method)
                try:
                    detection = self.watermarker(method).detect(rgb)
                except Exception as exc:  # noqa: BLE001 - a detection error is a finding, not a crash
                    out["watermark"] = {"method": method, "found": False, "error": str(exc), "methods": list(tried)}
                    continue
                if detection.wm_id is None:
                    if out["watermark"] is None or "error" not in out["watermark"]:
                        out["watermark"] = {"method": tried[0], "found": False, "methods": list(tried)}
                    else:
                        out["watermark"]["methods"] = list(tried)
                    continue
                with Session(self.engine) as session:
                    rows = lookup_watermark(session, method, detection.wm_id)
                if getattr(detection, "needs_confirmation", False):
                    rows = self._confirm(rows, rgb, decision_ids)
                if not rows:
                    out["watermark"] = {"method": method, "found": False, "unconfirmed_id": detection.wm_id}
                    continue
                matches, distance = self._image_match(rows, rgb)
                if not matches and rows and release_size is not None:
                    matches, distance = self._placed_match(rows, rgb, method, detection, release_size, distance)
                out["watermark"] = {
                    "method": method, "found": True, "wm_id": detection.wm_id,
                    "version": self.watermarker(method).version,
                    "bit_accuracy_estimate": detection.bit_accuracy_estimate,
                    "confidence": detection.confidence,
                    "false_accept_bound": detection.false_accept_bound,
                    # the geometry undone before decoding: the copy's scale and rotation
                    "geometry": {"scale": round(detection.scale, 4), "rotation_deg": round(detection.rotation_deg, 2)},
                    "decision_ids": [r.decision_id for r in rows],
                    # A mark proves which decision released *a* render with this id; whether this
                    # image is that render (and not other content the mark was copied onto) is
                    # what the perceptual hash recorded at release says.
                    "image_matches_release": matches,
                    "pdq_distance": distance,
                }
                decision_ids += [r.decision_id for r in rows]
                break
        if rgb is None and mime.startswith("video/"):
            out["watermark"] = self._detect_video(data)
            decision_ids += out["watermark"].get("decision_ids", [])
        if rgb is None and mime.startswith("audio/"):
            out["watermark"] = self._detect_audio(data)
            decision_ids += out["watermark"].get("decision_ids", [])
        out["decision_ids"] = list(dict.fromkeys(decision_ids))
        return out

    def _detect_audio(self, data: bytes) -> dict[str, Any]:
        """Blind detection of the audio mark (issue #18; survives re-encoding and volume changes,
        needs no metadata), then the id's decision."""
        from gateway.audio.intake import decode_audio
        from gateway.audio.watermark import CANDIDATES, OFFSETS, detect

        method = "audio-qim"
        try:
            found = detect(decode_audio(data).samples)
        except Exception as exc:  # noqa: BLE001 - a detection error is a finding, not a crash
            return {"method": method, "found": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        if found is None:
            return {"method": method, "found": False}
        with Session(self.engine) as session:
            rows = lookup_watermark(session, method, found.payload.wm_id)
        return {"method": method, "found": bool(rows), "wm_id": found.payload.wm_id, "tiles": found.tiles,
                "confidence": round(found.confidence, 4), "flipped": found.payload.flipped,
                "false_accept_bound": OFFSETS * CANDIDATES * 2.0 ** -32,
                "decision_ids": [r.decision_id for r in rows]}

    def _detect_video(self, data: bytes) -> dict[str, Any]:
        """Blind detection of the video marks on the file's frames (works after the C2PA
        manifest was stripped or the file re-encoded), then the id's decision: "video-sparse"
        (every release since it replaced "video-luma"), then "video-luma" (older releases)."""
        import os
        import tempfile

        from gateway.video.sparsemark import METHOD as SPARSE
        from gateway.video.sparsemark import detect_sparse_in_file
        from gateway.video.watermark import detect_in_file

        fd, path = tempfile.mkstemp(suffix=".video")
        result: dict[str, Any] = {"method": SPARSE, "found": False}
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            for method, detect in ((SPARSE, detect_sparse_in_file), ("video-luma", detect_in_file)):
                try:
                    detection = detect(path)
                except Exception as exc:  # noqa: BLE001 - a detection error is a finding, not a crash
                    return {"method": method, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                if detection.wm_id is None:
                    continue
                with Session(self.engine) as session:
                    rows = lookup_watermark(session, method, detection.wm_id)
                result = {"method": method, "found": bool(rows), "wm_id": detection.wm_id,
                          "confidence": detection.confidence, "decision_ids": [r.decision_id for r in rows]}
                if rows:
                    break
        finally:
            os.unlink(path)
        return result

    def _methods_in_use(self) -> list[str]:
        """tileSync and dwtDctSvd always (cheap); rivaGan (about 1 s) and trustMark only if this
        deployment ever released with them."""
        methods = ["tileSync", "dwtDctSvd"]
        with Session(self.engine) as session:
            for other in ("rivaGan", "trustMark"):
                if session.exec(select(WatermarkRecord.id).where(WatermarkRecord.method == other).limit(1)).first():
                    methods.append(other)
        return methods

    def _image_match(self, rows: list[Any], rgb: np.ndarray) -> tuple[bool | None, int | None]:
        """(PDQ within 60 bits of a hash recorded at release, the smallest distance); (None, None)
        when no hash was recorded or no hasher is loaded."""
        distances = [d for d in self._pdq_distances(rows, rgb) if d is not None]
        if not distances:
            return None, None
        return min(distances) <= PDQ_SAME_IMAGE, min(distances)

    def _placed_match(self, rows: list[Any], rgb: np.ndarray, method: str, detection: Any,
                      release_size: Callable[[str], tuple[int, int] | None],
                      plain: int | None) -> tuple[bool | None, int | None]:
        """The copy put back where the mark says it sat in the release (scale, rotation, crop
        undone; marks that can localise a copy only), then PDQ against the recorded hash."""
        marker = self.watermarker(method)
        place = getattr(marker, "placements", None)
        if self.hasher is None or place is None or getattr(detection, "placement", None) is None:
            return (None if plain is None else plain <= PDQ_SAME_IMAGE), plain
        best = plain
        for row in rows:
            size = release_size(row.decision_id) if row.image_pdq else None
            if size is None:
                continue
            for placed in place(rgb, detection, size):
                distance = pdq_distance(self.hasher.hashes(placed)[0], row.image_pdq)
                best = distance if best is None else min(best, distance)
        return (None if best is None else best <= PDQ_SAME_IMAGE), best

    def _pdq_distances(self, rows: list[Any], rgb: np.ndarray) -> list[int | None]:
        """Per row, the smallest PDQ distance between this image and the hash recorded at release
        (None where none was recorded, or everywhere when no hasher is loaded)."""
        if self.hasher is None:
            return [None] * len(rows)
        hashes = self.hasher.hashes(rgb)
        return [min(pdq_distance(h, r.image_pdq) for h in hashes) if r.image_pdq else None for r in rows]

    def _confirm(self, rows: list[Any], rgb: np.ndarray, manifest_ids: list[str]) -> list[Any]:
        """Short ids (rivaGan, 24 bits) collide: keep only records the C2PA manifest or the image's
        perceptual hash confirms (PDQ within 60 bits of the hash recorded at release)."""
        distances = self._pdq_distances(rows, rgb)
        return [row for row, d in zip(rows, distances, strict=True)
                if row.decision_id in manifest_ids or (d is not None and d <= PDQ_SAME_IMAGE)]

    def close(self) -> None:
        return None
