"""Why: callers (API, CLI, pipeline) map registry failures to statuses and fail-closed denials by type.

RegistryError
├── RegistryUnavailable      database, key store or index unusable → the pipeline denies (fail closed)
├── NotFound
│   ├── SubjectNotFound
│   └── GrantNotFound
├── InvalidRequest           bad input (→ 422)
│   └── EnrolmentError       `code`: image_count | no_face | multiple_faces | low_quality | no_embedding
├── UnknownFaceModel
├── FaceModelNotReady        a face-model switch left enrolled subjects without templates
└── CryptoError
    ├── SubjectKeyNotFound   the subject's key is gone (erased) or never existed
    ├── SubjectKeyExists
    └── DecryptionError      wrong key, wrong AAD or tampered ciphertext
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RegistryError(Exception):
    """Base of every error the consent registry raises."""


class RegistryUnavailable(RegistryError):
    """The registry cannot answer; decisions that depend on it must fail closed."""


class NotFound(RegistryError):
    pass


class SubjectNotFound(NotFound):
    def __init__(self, subject_id: str) -> None:
        super().__init__(f"subject {subject_id!r} not found")
        self.subject_id = subject_id


class GrantNotFound(NotFound):
    def __init__(self, grant_id: str) -> None:
        super().__init__(f"grant {grant_id!r} not found")
        self.grant_id = grant_id


class AccessDenied(RegistryError):
    """A subject access token is unknown, malformed or expired (maps to 401)."""


class InvalidRequest(RegistryError):
    """The request is well-formed but cannot be accepted (maps to 422)."""


class EnrolmentError(InvalidRequest):
    """An enrolment image was refused; `code` says why, `image_index` which image (if any)."""

    def __init__(self, code: str, message: str, image_index: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.image_index = image_index


class UnknownFaceModel(RegistryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"face model {name!r} is not registered with the consent registry")
        self.name = name


class FaceModelNotReady(RegistryError):
    """Re-embedding for a face-model switch left `missing` enrolled subjects without a template."""

    def __init__(self, model: str, missing: int, report: Mapping[str, Any]) -> None:
        self.model, self.missing, self.report = model, missing, dict(report)
        super().__init__(
            f"face model {model!r}: {missing} enrolled subject(s) have no template for it after re-embedding "
            f"({report.get('skipped_images', 0)} enrolment image(s) failed its quality gate); "
            "re-enrol or erase them before switching"
        )


class CryptoError(RegistryError):
    pass


class SubjectKeyNotFound(CryptoError):
    def __init__(self, subject_id: str) -> None:
        super().__init__(f"no data key for subject {subject_id!r} (erased or never created)")
        self.subject_id = subject_id


class SubjectKeyExists(CryptoError):
    def __init__(self, subject_id: str) -> None:
        super().__init__(f"subject {subject_id!r} already has a data key")
        self.subject_id = subject_id


class DecryptionError(CryptoError):
    """Authentication failed: wrong key, wrong subject/purpose binding, or tampered bytes."""
