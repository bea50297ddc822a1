"""The development PKI: idempotent, private keys 0600, and certificates shaped as c2pa requires."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.provenance import PkiError, PkiPaths, init_dev_pki


def test_files_modes_and_idempotence(pki: PkiPaths) -> None:
    for key in (pki.signing_key, pki.root_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = {p: p.read_bytes() for p in (pki.root_cert, pki.signing_cert_chain, pki.signing_key)}
    again = init_dev_pki(pki.root_cert.parent, alg=pki.alg)
    assert again == pki
    assert {p: p.read_bytes() for p in before} == before


def test_certificate_profile(pki: PkiPaths) -> None:
    chain = x509.load_pem_x509_certificates(pki.signing_cert_chain.read_bytes())
    leaf, root = chain[0], x509.load_pem_x509_certificate(pki.root_cert.read_bytes())
    assert chain[1] == root and leaf.issuer == root.subject and leaf.subject != leaf.issuer
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in list(eku)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_mismatched_algorithm_and_partial_dirs_are_refused(es256_pki: PkiPaths, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="es256"):
        init_dev_pki(es256_pki.root_cert.parent, alg="ed25519")
    (tmp_path / "c2pa-signing.key").write_text("half")
    with pytest.raises(PkiError, match="partial"):
        init_dev_pki(tmp_path)
