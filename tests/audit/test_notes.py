"""Checkpoint signing in the C2SP signed-note format, checked against the Go sumdb/note example."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.errors import AuditConfigError, ProofError
from gateway.audit.notes import (
    CheckpointSigner,
    VerifierKey,
    generate_signing_key,
    load_signer,
    parse_checkpoint,
    verifier_key,
)

# golang.org/x/mod/sumdb/note: the PeterNeumann example key and signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann " + GO_SIG + "\n"


def go_signer() -> CheckpointSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return CheckpointSigner.from_private_key(Ed25519PrivateKey.from_private_bytes(seed), "PeterNeumann")


def test_signer_reproduces_the_go_example_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.vkey == GO_VKEY
    assert signer.sign_note(GO_TEXT) == GO_NOTE


def test_go_example_verifies_and_a_changed_note_does_not() -> None:
    key = VerifierKey.from_vkey(GO_VKEY)
    assert key.verify_note(GO_NOTE) == GO_TEXT
    with pytest.raises(ProofError):
        key.verify_note(GO_NOTE.replace("cryptography", "cryptographY"))


def test_checkpoint_round_trip_and_failures() -> None:
    signer = CheckpointSigner.generate("example.org/log")
    cp = signer.sign_checkpoint("example.org/log", 12, bytes(range(32)))
    assert cp.note.startswith("example.org/log\n12\n" + base64.b64encode(bytes(range(32))).decode() + "\n\n")
    parsed = parse_checkpoint(cp.note, signer.verifier)
    assert (parsed.origin, parsed.tree_size, parsed.root_hash) == ("example.org/log", 12, bytes(range(32)))
    other = CheckpointSigner.generate("example.org/log")
    with pytest.raises(ProofError):  # a signature by another key with the same name
        parse_checkpoint(cp.note, other.verifier)
    with pytest.raises(ProofError):  # no signature at all
        parse_checkpoint(cp.note.split("\n\n")[0] + "\n", signer.verifier)
    with pytest.raises(ProofError):  # body changed after signing
        parse_checkpoint(cp.note.replace("\n12\n", "\n13\n"), signer.verifier)


def test_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.pem"
    public = generate_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    signer = load_signer(path, "example.org/log")
    assert signer.public_key_bytes == public
    with pytest.raises(FileExistsError):
        generate_signing_key(path)
    # Every accepted public-key form names the same verifier.
    vk = signer.verifier
    (tmp_path / "k.vkey").write_text(vk.vkey + "\n")
    for form in (vk.vkey, public, public.hex(), base64.b64encode(public).decode(), str(path),
                 tmp_path / "k.vkey", signer):
        assert verifier_key(form, "example.org/log") == vk


def test_bad_keys_are_refused() -> None:
    with pytest.raises(AuditConfigError):
        VerifierKey.from_vkey(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(AuditConfigError):
        verifier_key(b"\x01" * 32)  # raw key without a name
    with pytest.raises(AuditConfigError):
        CheckpointSigner.generate("has space")
