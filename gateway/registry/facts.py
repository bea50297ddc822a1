"""Why: the decision core needs registry facts without importing the registry's heavy machinery.

The records themselves are defined once, in the pure `gateway.decision.facts` (standard library only);
this module re-exports the ones the registry produces, so registry callers and the decision module share
one type and importing it stays cheap.
"""

from __future__ import annotations

from gateway.decision.facts import FaceMatch, GrantFact, SubjectFact

__all__ = ["FaceMatch", "GrantFact", "SubjectFact"]
