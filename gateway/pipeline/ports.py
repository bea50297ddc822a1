"""Why: the pipeline asks the consent registry four questions (who is this face, who is named,
which hash-list entries are near, which grants hold right now). This Protocol is that contract;
`EmptyConsent` is the honest answer of a deployment with no registry attached (nobody enrolled)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gateway.decision.facts import FaceMatch, GrantFact, SubjectFact


class ConsentLookup(Protocol):
    def match_faces(
        self, model_name: str, embeddings: np.ndarray, threshold: float
    ) -> list[list[FaceMatch]]: ...

    def match_names(self, prompt: str) -> list[tuple[str, str]]: ...

    def hash_hits(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]: ...

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]: ...

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]: ...


class EmptyConsent:
    """No subjects enrolled: no face matches, no names, no hashes, no grants."""

    def match_faces(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        return [[] for _ in range(len(embeddings))]

    def match_names(self, prompt: str) -> list[tuple[str, str]]:
        return []

    def hash_hits(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]:
        return []

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]:
        return {}

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]:
        return {}
