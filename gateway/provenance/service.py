"""Why: an approved render leaves the gateway only marked and signed, traceable to the decision
that let it out. This is the edge that carries out a verdict's obligations on an image — blur,
watermark (id reserved in the database first), re-encode in the client's format, C2PA-sign —
and the reverse path, verify: C2PA state, the watermark payload (also on stripped or re-encoded
copies) and the decision it leads to."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.media import encode_image
from gateway.provenance import (
    C2paSigner,
    ReleaseClaim,
    SoftwareAgent,
    blur_regions,
    lookup_watermark,
    make_watermarker,
    read_manifest,
    record_watermark,
    reserve_watermark_id,
)
from gateway.provenance.keys import PkiPaths, init_dev_pki

PDQ_SAME_IMAGE = 60  # bits: at most this far from the hash recorded at release is the same render

DEFAULT_STRENGTH = {"dwtDctSvd": 36.0, "dwtDct": 36.0, "rivaGan": 1.0}


@dataclass
class ReleasedImage:
    data: bytes
    mime: str
    output: dict[str, Any]


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
    hasher: Any = None
    faults: ProvenanceFaults = field(default_factory=ProvenanceFaults)
    _watermarkers: dict[tuple[str, float], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Any, engine: Engine, c2pa_dir: Path) -> ProvenanceService:
        pki = init_dev_pki(c2pa_dir)
        chain = Path(settings.extra.get("c2pa_cert_chain", pki.signing_cert_chain))
        key = Path(settings.extra.get("c2pa_key", pki.signing_key))
        anchors = Path(settings.extra.get("c2pa_trust_anchors", pki.root_cert)).read_bytes()
        return cls(engine, C2paSigner.from_files(chain, key), anchors, pki)

    def watermarker(self, method: str, strength: float = 1.0) -> Any:
        key = (method, float(strength))
        with self._lock:
            if key not in self._watermarkers:
                if method == "rivaGan":
                    self._watermarkers[key] = make_watermarker(method)
                else:
                    base = DEFAULT_STRENGTH.get(method, 36.0)
                    self._watermarkers[key] = make_watermarker(method, strength=base * strength)
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
        """Blur → watermark → encode → sign. Raises on any failure (the caller denies)."""
        pixels = rgb
        blur = [b["bbox"] for b in obligations.get("blur", []) if b.get("media_index") == media_index]
        if blur:
            pixels = blur_regions(pixels, blur)
        wm = obligations.get("watermark")
        wm_id = None
        method = None
        if wm is not None:
            if self.faults.watermark_fails:
                raise RuntimeError("watermark failed (fault injected)")
            method = wm["method"]
            with Session(self.engine) as session:
                wm_id = reserve_watermark_id(session, method=method, decision_id=decision_id).wm_id
            pixels = self.watermarker(method, wm.get("strength", 1.0)).embed(pixels, wm_id)
        data = encode_image(np.ascontiguousarray(pixels, dtype=np.uint8), mime)
        manifest_digest = None
        if obligations.get("sign"):
            if self.faults.sign_fails:
                raise RuntimeError("C2PA signing failed (fault injected)")
            agent = None
            if software_agent:
                agent = SoftwareAgent(str(software_agent.get("name")), software_agent.get("version"))
            signed = self.signer.sign(data, mime, ReleaseClaim(
                decision_id=decision_id, policy_digest=policy_digest, grant_ids=tuple(grant_ids),
                watermark_id=wm_id, watermark_method=method, software_agent=agent,
                title=f"consentgate release {decision_id}",
            ))
            data, manifest_digest = signed.data, signed.manifest_digest
        if wm_id is not None and method is not None:
            image_pdq = self.hasher.hashes(pixels)[0] if self.hasher is not None else None
            with Session(self.engine) as session:
                record_watermark(session, method=method, wm_id=wm_id, decision_id=decision_id,
                                 manifest_digest=manifest_digest, image_pdq=image_pdq)
        output: dict[str, Any] = {"media_index": media_index, "sha256": hashlib.sha256(data).hexdigest(),
                                  "type": mime}
        if manifest_digest:
            output["manifest_digest"] = manifest_digest
        if wm_id is not None:
            output["watermark_id"] = f"{method}:{wm_id}"
        return ReleasedImage(data, mime, output)

    def inspect(self, data: bytes, mime: str, rgb: np.ndarray | None) -> dict[str, Any]:
        """C2PA report + watermark detection + the decision ids they point to."""
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
            for method in self._methods_in_use():
                try:
                    detection = self.watermarker(method).detect(rgb)
                except Exception as exc:  # noqa: BLE001 - a detection error is a finding, not a crash
                    out["watermark"] = {"method": method, "error": str(exc)}
                    continue
                if detection.wm_id is None:
                    out["watermark"] = {"method": method, "found": False}
                    continue
                with Session(self.engine) as session:
                    rows = lookup_watermark(session, method, detection.wm_id)
                if getattr(detection, "needs_confirmation", False):
                    rows = self._confirm(rows, rgb, decision_ids)
                if not rows:
                    out["watermark"] = {"method": method, "found": False, "unconfirmed_id": detection.wm_id}
                    continue
                matches, distance = self._image_match(rows, rgb)
                out["watermark"] = {
                    "method": method, "found": True, "wm_id": detection.wm_id,
                    "bit_accuracy_estimate": detection.bit_accuracy_estimate,
                    "false_accept_bound": getattr(detection, "false_accept_bound", None),
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
        out["decision_ids"] = list(dict.fromkeys(decision_ids))
        return out

    def _detect_video(self, data: bytes) -> dict[str, Any]:
        """Blind detection of the video mark on frames sampled from the file (works after the
        C2PA manifest was stripped or the file re-encoded), then the id's decision."""
        import os
        import tempfile

        from gateway.video.watermark import detect_in_file

        fd, path = tempfile.mkstemp(suffix=".video")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            detection = detect_in_file(path)
        except Exception as exc:  # noqa: BLE001 - a detection error is a finding, not a crash
            return {"method": "video-luma", "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        finally:
            os.unlink(path)
        if detection.wm_id is None:
            return {"method": "video-luma", "found": False}
        with Session(self.engine) as session:
            rows = lookup_watermark(session, "video-luma", detection.wm_id)
        return {"method": "video-luma", "found": bool(rows), "wm_id": detection.wm_id,
                "confidence": detection.confidence, "decision_ids": [r.decision_id for r in rows]}

    def _methods_in_use(self) -> list[str]:
        """dwtDctSvd always (cheap); rivaGan (about 1 s) only if this deployment ever released with it."""
        from sqlmodel import select

        from gateway.provenance.models import WatermarkRecord

        methods = ["dwtDctSvd"]
        with Session(self.engine) as session:
            for other in ("rivaGan", "dwtDct"):
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

    def _pdq_distances(self, rows: list[Any], rgb: np.ndarray) -> list[int | None]:
        """Per row, the smallest PDQ distance between this image and the hash recorded at release
        (None where none was recorded, or everywhere when no hasher is loaded)."""
        from gateway.provenance import pdq_distance

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
