"""Why: the registry's write operations (`admin`) and its decision-time lookups (`service.Registry`)
share the same parts — the database, the subject crypto, the face analyzers and hasher, the quality
gate — and nothing else. `RegistryCore` holds exactly those, so `admin` depends on this small core
instead of on the service that calls it (no import cycle between the two)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from classifiers.base import FaceAnalyzer, PerceptualHasher, VoiceEmbedder
from gateway.registry.crypto import SubjectCrypto
from gateway.registry.enrolment import QualityGate
from gateway.registry.envelope import PROFILE
from gateway.registry.errors import UnknownFaceModel
from gateway.registry.ledger import Ledger
from gateway.registry.models import RegistrySubject
from gateway.registry.pseudonyms import EndUserPseudonyms

__all__ = ["PROFILE", "RegistryCore"]


class RegistryCore:
    """The registry's parts. `face_analyzers` maps a face model name to its loaded analyzer (attached
    when a policy naming it activates); `ledger` is the consent ledger every mutation is appended to."""

    def __init__(
        self,
        engine: Engine,
        crypto: SubjectCrypto,
        face_analyzers: Mapping[str, FaceAnalyzer],
        hasher: PerceptualHasher | None = None,
        *,
        keep_enrolment_images: bool = True,
        gate: QualityGate | None = None,
        max_images: int = 10,
    ) -> None:
        self.engine = engine
        self.crypto = crypto
        self.face_analyzers: dict[str, FaceAnalyzer] = dict(face_analyzers)
        self.hasher = hasher
        self.keep_enrolment_images = keep_enrolment_images
        self.gate = gate or QualityGate()
        self.max_images = max_images
        self.ledger: Ledger | None = None  # the consent ledger (attach_ledger); None: no entries
        self.pseudonyms = EndUserPseudonyms(crypto)  # end-user ids as keyed hashes in the log
        self.ledger_tenant = "operator"
        # voice model name -> embedder (attached when a policy naming it activates; issue #18)
        self.voice_embedders: dict[str, VoiceEmbedder] = {}

    def attach_ledger(self, ledger: Ledger, tenant: str) -> None:
        """Append every mutation to `ledger` (the audit log) in its own transaction, as `tenant`
        (the operator tenant, whose keys alone may change the registry)."""
        self.ledger = ledger
        self.ledger_tenant = tenant

    def analyzer(self, model_name: str) -> FaceAnalyzer:
        try:
            return self.face_analyzers[model_name]
        except KeyError:
            raise UnknownFaceModel(model_name) from None

    def profile(self, row: RegistrySubject) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.crypto.decrypt(row.id, row.profile_ct, PROFILE))
        return data
