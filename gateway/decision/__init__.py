"""The pure decision core: facts + policy → verdict. No I/O, no clock."""

from gateway.decision.decide import consent_state, decide, grant_is_valid, normalise_text
from gateway.decision.facts import (
    FaceFact,
    FaceMatch,
    Facts,
    GrantFact,
    HashHit,
    InheritedFact,
    ModelFailure,
    NameFact,
    NsfwFact,
    SubjectFact,
    VoiceFact,
)
from gateway.decision.verdict import FaceConsent, Reason, Verdict, strictest

__all__ = [
    "FaceConsent", "FaceFact", "FaceMatch", "Facts", "GrantFact", "HashHit", "InheritedFact", "ModelFailure",
    "NameFact",
    "NsfwFact", "Reason", "SubjectFact", "Verdict", "consent_state", "decide", "grant_is_valid",
    "normalise_text", "strictest", "VoiceFact",
]
