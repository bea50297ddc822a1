"""Why: a detected face becomes a consent fact by one rule, whether it was seen in an image or in a
video frame — matched with confidence, `unidentified` (no embedding, just under the match threshold,
too small to say it is nobody enrolled, or flagged by the analyzer), or confidently nobody enrolled.
Written once here so the image and video paths cannot drift apart (the video path once treated an
embedding-less face as a model failure and dropped the analyzer's reason)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from classifiers.base import DetectedFace
from gateway.decision import FaceFact, FaceMatch
from gateway.policy.schema import ConsentSettings

__all__ = ["NOT_EMBEDDED", "face_fact", "query_threshold"]

NOT_EMBEDDED = "the face analyzer could not embed it"


def query_threshold(consent: ConsentSettings) -> float:
    """The similarity the registry is asked down to: the match threshold less the near-match margin."""
    return consent.match_threshold - consent.near_match_margin


def face_fact(media_index: int, face: DetectedFace, hits: Sequence[FaceMatch] | None, consent: ConsentSettings,
              *, frame: int | None = None, t: float | None = None) -> FaceFact:
    """`hits`: the registry's answer for this face's embedding, asked down to `query_threshold`
    (None when the face has no embedding)."""
    bbox = face.bbox
    if face.embedding is None or hits is None:
        return FaceFact(media_index, bbox, float(face.det_score), (), frame=frame, t=t,
                        unidentified=face.unidentified or NOT_EMBEDDED)
    threshold = consent.match_threshold
    sure = tuple(m for m in hits if m.similarity >= threshold)
    fact = FaceFact(media_index, bbox, float(face.det_score), sure, frame=frame, t=t)
    if not sure and hits:
        # just under the threshold: as likely a different photo of an enrolled person as a
        # look-alike (docs/faces.md) — never "nobody enrolled"; which subject is not recorded
        best = max(m.similarity for m in hits)
        return replace(fact, unidentified=f"similarity {best:.3f} to an enrolled subject is within "
                       f"{consent.near_match_margin:g} of the match threshold {threshold:g}")
    if not sure and fact.size_px < consent.identify_min_px:
        return replace(fact, unidentified=f"{fact.size_px} px is below the {consent.identify_min_px} px needed "
                       "to tell it is nobody enrolled")
    if not sure and face.unidentified:
        return replace(fact, unidentified=face.unidentified)
    return fact
