"""Why: the verdict is the decision core's whole output — decision, the reasons with the numbers
that made each rule fire, obligations for the edges, and per-face consent for the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["allow", "review", "deny"]
RuleOutcome = Literal["allow", "redact", "review", "deny"]
PRECEDENCE: dict[str, int] = {"allow": 0, "redact": 1, "review": 2, "deny": 3}


def strictest(outcomes: list[str]) -> str:
    """deny > review > redact > allow; an empty list is allow."""
    return max(outcomes, key=lambda o: PRECEDENCE[o], default="allow")


@dataclass(frozen=True)
class Reason:
    rule: str
    outcome: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class FaceConsent:
    """Consent state of one face: granted | no_grant | revoked | expired | protected | no_match |
    unidentified (seen, but not identifiable: see `FaceFact.unidentified`)."""

    state: str
    grant_id: str | None = None
    subject_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"grant_id": self.grant_id, "state": self.state}


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: tuple[Reason, ...]
    obligations: dict[str, Any]
    face_consent: tuple[FaceConsent, ...] = ()
    name_consent: tuple[FaceConsent, ...] = ()
    shadow: tuple[dict[str, Any], ...] = ()
    grant_ids: tuple[str, ...] = field(default=())
    voice_consent: tuple[FaceConsent, ...] = ()
    inherited_consent: tuple[FaceConsent, ...] = ()  # one per `Facts.inherited`, in order
