"""consentgate-client: talk to a consentgate gateway from Python with only httpx installed (no
model stack). Check, release, generate, jobs, the consent registry, the audit log, provenance and
API keys, with typed answers and one exception type per kind of refusal.

    from consentgate_client import ConsentgateClient, PolicyDenied

    with ConsentgateClient("http://127.0.0.1:8080", api_key) as cg:
        decision = cg.check([png_bytes], use="img2img", prompt="a cup")
        print(decision.verdict, [f.consent_state for f in decision.faces])
"""

from consentgate_client._client import AsyncConsentgateClient, ConsentgateClient
from consentgate_client._errors import ConsentgateError, PolicyDenied, raise_for_answer
from consentgate_client._models import (
    AccessToken,
    ApiKey,
    AuditEntry,
    AuditPage,
    Checkpoint,
    ConsistencyProof,
    Decision,
    Enrolment,
    Face,
    GeneratedImage,
    GenerateResult,
    Grant,
    InclusionProof,
    Job,
    Output,
    PolicyRef,
    ProvenanceDecision,
    ProvenanceReport,
    Reason,
    Released,
    Subject,
    SubjectUses,
    Use,
)

__version__ = "0.1.0"
__all__ = [
    "AccessToken", "ApiKey", "AsyncConsentgateClient", "AuditEntry", "AuditPage", "Checkpoint", "ConsentgateClient",
    "ConsentgateError", "ConsistencyProof", "Decision", "Enrolment", "Face", "GenerateResult", "GeneratedImage",
    "Grant", "InclusionProof", "Job", "Output", "PolicyDenied", "PolicyRef", "ProvenanceDecision",
    "ProvenanceReport", "Reason", "Released", "Subject", "SubjectUses", "Use", "raise_for_answer",
]
