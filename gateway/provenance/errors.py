"""Why: the pipeline turns every provenance failure into a fail-closed deny, so it needs one
exception family to catch, with the failing stage in its name.

    ProvenanceError
    ├── WatermarkError   embedding or detection failed (image too small, model error, fault hook)
    ├── SigningError     C2PA signing failed (bad key or certificate, unsupported media, fault hook)
    └── PkiError         key or certificate files missing, unreadable or inconsistent
"""

from __future__ import annotations

__all__ = ["PkiError", "ProvenanceError", "SigningError", "WatermarkError"]


class ProvenanceError(Exception):
    """Base class of every error raised by ``gateway.provenance``."""


class WatermarkError(ProvenanceError):
    """The watermark could not be embedded or read."""


class SigningError(ProvenanceError):
    """The C2PA manifest could not be built or signed."""


class PkiError(ProvenanceError):
    """Keys or certificates are missing or unusable."""
