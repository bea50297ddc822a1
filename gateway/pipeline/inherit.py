"""Why: for some uses the consent that matters is the *input's*: a face swap, an img2img edit, an animated
photo or a cloned voice is made from a reference of someone, and the render may no longer match that
person well enough for the output check to recognise them. Left to the output check alone, the client's
declared use and a render that drifted from the reference would decide (issue #15.2: a face_swap render
refused as `face_swap` was allowed as `txt2img`). So an output check or release of such a use must name
its input decision (`request.input_decision_id`), and the output is bound to it:

- the decision is looked up in the audit log (the `DecisionLookup` port: I/O at the edge), scoped to the
  caller's tenant — another tenant's id is answered like an unknown one (404 `input_decision_not_found`);
- it must be an *input*-stage decision (409 `input_decision_mismatch`) that was not denied or sent to
  review (403 `input_decision_denied`), made within `PipelineConfig.input_decision_max_age_s` (default
  one hour; older: 409 `input_decision_expired`);
- the output inherits its use: a different declared use is 409 `input_decision_mismatch`;
- the output inherits the identities it found (subject ids of matched faces and voices, names in the
  prompt): they enter the output decision as `InheritedFact`s, so each needs a valid grant *now* for
  the use — revoked between input and output, the render is refused.

Missing for a use in `INPUT_BOUND_USES` → 400 `input_decision_required`. Any output may name an input
decision (then the same checks apply); the proxy passes its own input record in-process (same request).
The binding is resolved here; `decide()` stays pure and only sees the facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.decision.facts import InheritedFact
from gateway.errors import BadInput, Conflict, Forbidden, GatewayError, NotFound, NotReady
from gateway.pipeline.ports import Clock, DecisionLookup
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.threads import in_thread

__all__ = ["DEFAULT_MAX_AGE_S", "INPUT_BOUND_USES", "InputBinding", "bind_input", "binding_of", "needs_input",
           "resolve_binding"]

# The uses whose consent applies to their inputs — the render is made *from* a reference that shows (or
# voices) a person: a face swap, an image edit, a photo animated or a video re-made, a voice cloned. An
# output check or release of one of these must name its input decision. A code-level constant (documented
# in docs/api.md and SECURITY.md) so that no policy edit or tenant overlay can drop it. Text-only uses
# (txt2img, txt2video, tts) have no reference; `dub` keeps the person of its source on the output, where
# the output check finds them.
INPUT_BOUND_USES: frozenset[str] = frozenset({"face_swap", "img2img", "img2video", "video2video", "voice_clone"})
DEFAULT_MAX_AGE_S = 3600.0  # how long an input decision can back outputs
CLOCK_SKEW_S = 60.0  # replicas' clocks may differ by this much


@dataclass(frozen=True)
class InputBinding:
    """The input decision an output is bound to, and the identities it found."""

    decision_id: str
    use: str
    inherited: tuple[InheritedFact, ...]


def needs_input(request: CheckRequest) -> bool:
    return request.stage == "output" and request.use in INPUT_BOUND_USES


def _subjects(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(subject id, source) for every enrolled subject the record's findings name, once each."""
    findings = record.get("findings") or {}
    found: dict[str, str] = {}
    for source, key in (("face", "faces"), ("voice", "voices")):
        for item in findings.get(key) or []:
            for match in (item.get("matches") or []) if isinstance(item, Mapping) else []:
                sid = match.get("subject_id") if isinstance(match, Mapping) else None
                if isinstance(sid, str) and sid:
                    found.setdefault(sid, source)
    for item in findings.get("prompt") or []:
        sid = item.get("subject_id") if isinstance(item, Mapping) else None
        if isinstance(sid, str) and sid:
            found.setdefault(sid, "name")
    return sorted(found.items())


def binding_of(record: Mapping[str, Any]) -> InputBinding:
    """The binding to an input record already in hand (the proxy's own input decision)."""
    decision_id = str(record.get("decision_id"))
    return InputBinding(decision_id, str(record.get("use")),
                        tuple(InheritedFact(sid, source, decision_id) for sid, source in _subjects(record)))


def _created(record: Mapping[str, Any]) -> datetime | None:
    raw = record.get("created_at")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def bind_input(lookup: DecisionLookup | None, tenant: str, request: CheckRequest, now: datetime,
               max_age_s: float = DEFAULT_MAX_AGE_S) -> InputBinding | None:
    """Resolve and check `request.input_decision_id` (see the module docstring); None when the request
    names none and its use does not need one. Raises the typed 4xx errors; never decides."""
    wanted = request.input_decision_id
    if wanted is None:
        if needs_input(request):
            raise BadInput(
                f"an output check of use {request.use!r} must name its input decision: set "
                f"`input_decision_id` in the `request` part to the decision_id of the input check of the "
                f"reference media (uses bound to their input: {', '.join(sorted(INPUT_BOUND_USES))})",
                code="input_decision_required")
        return None
    if request.stage != "output":
        raise BadInput("`input_decision_id` is for output checks: an input check has no input decision",
                       code="input_decision_mismatch")
    if lookup is None:
        raise NotReady("no decision store is attached: input decisions cannot be looked up")
    record = lookup.find_decision(wanted, tenant)
    if record is None or record.get("tenant") != tenant or record.get("kind", "decision") != "decision":
        raise NotFound(f"no input decision {wanted} of this tenant (`input_decision_id`)",
                       code="input_decision_not_found")
    if record.get("stage") != "input":
        raise Conflict(f"decision {wanted} is an {record.get('stage')} decision, not an input decision "
                       "(`input_decision_id` names the input check of the reference media)",
                       code="input_decision_mismatch")
    if record.get("decision") != "allow":
        raise Forbidden(f"input decision {wanted} was {record.get('decision')}: nothing made from that input "
                        "may be checked or released", code="input_decision_denied")
    created = _created(record)
    age = (now - created).total_seconds() if created is not None else None
    if age is None or age > max_age_s or age < -CLOCK_SKEW_S:
        raise Conflict(f"input decision {wanted} is older than {max_age_s:g} s (made {record.get('created_at')}); "
                       "check the input again", code="input_decision_expired")
    if record.get("use") != request.use:
        raise Conflict(f"input decision {wanted} was made for use {record.get('use')!r}; this output declares "
                       f"{request.use!r} — an output inherits its input's use", code="input_decision_mismatch")
    return binding_of(record)


async def resolve_binding(lookup: DecisionLookup | None, clock: Clock, tenant: str, request: CheckRequest,
                          max_age_s: float = DEFAULT_MAX_AGE_S) -> InputBinding | None:
    """`bind_input` off the event loop (the lookup reads the database); a lookup that fails is a 503
    `input_decision_unavailable`, never a skipped check."""
    if request.input_decision_id is None:  # nothing to look up: refuse or pass without a thread hop
        return bind_input(None, tenant, request, clock(), max_age_s)
    try:
        return await in_thread(bind_input, lookup, tenant, request, clock(), max_age_s)
    except GatewayError:
        raise
    except Exception as exc:  # noqa: BLE001 - the audit log cannot answer: refuse, fail closed
        raise NotReady(f"the input decision could not be looked up ({type(exc).__name__}); nothing was decided",
                       code="input_decision_unavailable") from None
