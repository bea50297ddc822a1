"""Why: every integration test that makes the gateway write audit entries should end by checking
the log from outside, the way an auditor would (after Sunlight's CheckLog)."""

from __future__ import annotations

from sqlalchemy import Engine

from .log import AuditLog
from .notes import PublicKeyLike
from .verify import VerifyReport, verify_database


def assert_log_consistent(
    log_or_engine: AuditLog | Engine,
    public_key: PublicKeyLike | None = None,
    *,
    table_prefix: str = "audit_",
    require_covered: bool = False,
) -> VerifyReport:
    """Fail the test (AssertionError with the verifier's message) unless the log verifies.

    With an AuditLog the key defaults to its signer's and the prefix to its tables'. Mid-test the
    newest entries may still wait for a checkpoint, so by default they are tolerated
    (`require_covered=True` makes it as strict as `consentgate audit verify`).
    """
    if isinstance(log_or_engine, AuditLog):
        engine, prefix = log_or_engine.engine, log_or_engine.tables.prefix
        key: PublicKeyLike = public_key if public_key is not None else log_or_engine.signer
    else:
        if public_key is None:
            raise TypeError("assert_log_consistent(engine, ...) needs the public key")
        engine, prefix, key = log_or_engine, table_prefix, public_key
    report = verify_database(engine, key, table_prefix=prefix, check_canonical=True,
                             require_covered=require_covered)
    assert report.ok, f"audit log does not verify: {report.message}"
    return report
