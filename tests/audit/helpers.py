"""Why: shared data for the audit tests (imported by conftest and the test modules)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import TextClause, text

from gateway.audit import AuditLog

ORIGIN = "audit.test.consentgate/log"
LogFactory = Callable[..., AuditLog]


def sql(statement: str, prefix: str) -> TextClause:
    """A raw statement on this test's tables: `{p}` stands for the table prefix."""
    return text(statement.replace("{p}", prefix))


def decision(i: int, **extra: object) -> dict[str, object]:
    """A decision record shaped like the gateway's (digests and ids only)."""
    record: dict[str, object] = {
        "decision_id": uuid.UUID(int=i).hex,
        "kind": "decision",
        "decision": ("allow", "deny", "review")[i % 3],
        "tenant": ("acme", "globex")[i % 2],
        "use": ("txt2img", "img2img", "face_swap")[i % 3],
        "stage": "output",
        "created_at": f"2026-11-26T12:{i // 60 % 60:02d}:{i % 60:02d}.5Z",
        "policy": {"name": "default", "digest": "sha256:" + "ab" * 32},
        "findings": {
            "faces": [{"media_index": 0, "det_score": 0.97, "bbox": [1, 2, 30.5, 40],
                       "matches": [{"subject_id": f"subj-{i % 5}", "similarity": 0.91}],
                       "consent": {"grant_id": None, "state": "no_grant"}}],
            "nsfw": [{"media_index": 0, "model": "fake", "scores": {"unsafe": 1e-05 * i}}],
        },
    }
    record.update(extra)
    return record
