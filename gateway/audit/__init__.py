"""The consentgate audit log: an RFC 6962 Merkle tree over canonical JSON records, with signed
checkpoints, proofs, queries, export and an offline verifier. Self-contained: it imports nothing
else from `gateway`. See SPEC.md for the formats.

The writer (`AuditLog`) and the export need SQLAlchemy; they are imported when first named (PEP 562),
so that reading and verifying a SQLite log through the standard library (`sqlite.py`) does not pay
SQLAlchemy's import (~0.2 CPU-s: the CLI's start-up, #22.6).
"""

from typing import TYPE_CHECKING, Any

from .canonical import CanonicalizationError, Columns, canonical_json
from .errors import AuditAppendError, AuditConfigError, AuditError, AuditNotFound, ProofError
from .merkle import EMPTY_ROOT, MemoryTree, leaf_hash, node_hash, verify_consistency, verify_inclusion
from .notes import (
    Checkpoint,
    CheckpointSigner,
    PublicKeyLike,
    VerifierKey,
    checkpoint_note_from,
    generate_signing_key,
    load_signer,
    parse_checkpoint,
    verifier_key,
)
from .receipts import CheckedReceipt, check_checkpoint, check_consistency, check_receipt
from .schema import audit_metadata, audit_tables
from .values import AuditEntry, ConsistencyProof, Head, InclusionProof
from .verify import VerifyReport, verify_database, verify_export

if TYPE_CHECKING:
    from .export import ExportSummary, export_log
    from .log import AppendResult, AuditFaults, AuditLog

_LAZY = {"ExportSummary": ".export", "export_log": ".export", "AppendResult": ".log", "AuditFaults": ".log",
         "AuditLog": ".log"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "EMPTY_ROOT",
    "AppendResult",
    "AuditAppendError",
    "AuditConfigError",
    "AuditEntry",
    "AuditError",
    "AuditFaults",
    "AuditLog",
    "AuditNotFound",
    "CanonicalizationError",
    "CheckedReceipt",
    "Checkpoint",
    "CheckpointSigner",
    "Columns",
    "ConsistencyProof",
    "ExportSummary",
    "Head",
    "InclusionProof",
    "MemoryTree",
    "ProofError",
    "PublicKeyLike",
    "VerifierKey",
    "VerifyReport",
    "audit_metadata",
    "audit_tables",
    "canonical_json",
    "check_checkpoint",
    "check_consistency",
    "check_receipt",
    "checkpoint_note_from",
    "export_log",
    "generate_signing_key",
    "leaf_hash",
    "load_signer",
    "node_hash",
    "parse_checkpoint",
    "verifier_key",
    "verify_consistency",
    "verify_database",
    "verify_export",
    "verify_inclusion",
]
