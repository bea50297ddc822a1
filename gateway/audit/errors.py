"""Why: callers must tell "the log refused the write" (fail closed) from "bad input" or "not found".

    AuditError
    ├── AuditAppendError      an append did not become durable; nothing may be released
    ├── AuditConfigError      tables, origin or key do not match what this log expects
    ├── AuditNotFound         no such entry (or not visible to the tenant asking)
    └── ProofError            a proof was asked for sizes/indexes the log cannot serve,
                              or a proof / signed note did not verify
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error the audit library raises."""


class AuditAppendError(AuditError):
    """The record was not appended; the caller must treat the decision as not recorded."""


class AuditConfigError(AuditError):
    """The database or key material does not fit this log's configuration."""


class AuditNotFound(AuditError, LookupError):
    """The entry does not exist, or is outside the tenant scope of the query."""


class ProofError(AuditError, ValueError):
    """A proof cannot be produced for these arguments, or a proof or note failed to verify."""
