"""C2PA: sign -> Trusted with our assertions; one flipped byte -> Invalid; no anchors ->
Valid; unsigned -> ManifestNotFound; JPEG/PNG/WebP/MP4 all sign; stripped copies keep the
watermark; a self-signed signing certificate and the fault hook fail with SigningError."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json

import av
import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.provenance import (
    C2paSigner,
    DwtDctSvdWatermarker,
    PkiPaths,
    ReleaseClaim,
    SigningError,
    SoftwareAgent,
    read_manifest,
)
from gateway.provenance.c2pa_sign import TRAINED_ALGORITHMIC_MEDIA
from tests.provenance.conftest import decode, encode

CLAIM = ReleaseClaim(decision_id="9f" * 16, policy_digest="sha256:" + "ab" * 32, grant_ids=("g-1", "g-2"),
                     watermark_id=0x12_3456_789A, watermark_method="dwtDctSvd",
                     software_agent=SoftwareAgent("demo-upstream", "1.2"), title="render.jpg")

FORMATS = [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]


@pytest.mark.parametrize(("fmt", "mime"), FORMATS)
def test_sign_and_read_back_trusted(fmt: str, mime: str, astronaut: np.ndarray, pki: PkiPaths) -> None:
    signer = C2paSigner.from_files(pki.signing_cert_chain, pki.signing_key)
    signed = signer.sign(encode(astronaut, fmt), mime, CLAIM)
    assert len(signed.manifest_digest) == 64 and int(signed.manifest_digest, 16) >= 0
    report = read_manifest(signed.data, mime, pki.root_cert.read_bytes())
    assert report.state == "Trusted", report.validation_errors
    assert report.validation_errors == []
    actions = report.assertions["c2pa.actions.v2"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert report.software_agent == {"name": "demo-upstream", "version": "1.2"}
    assert report.decision == {"decision_id": CLAIM.decision_id, "policy_digest": CLAIM.policy_digest,
                               "grant_ids": ["g-1", "g-2"], "watermark_id": CLAIM.watermark_id,
                               "watermark_method": "dwtDctSvd", "watermark_version": "1"}
    assert report.soft_binding is not None
    assert report.soft_binding["alg"] == "org.consentgate.watermark.dwtDctSvd.v1"
    value = base64.b64decode(report.soft_binding["blocks"][0]["value"])
    assert int.from_bytes(value, "big") == CLAIM.watermark_id
    assert "audit" not in json.dumps(report.assertions)
    assert decode(signed.data).shape == astronaut.shape


def test_untrusted_chain_is_valid_not_trusted(signer: C2paSigner, coffee: np.ndarray,
                                              pki: PkiPaths, es256_pki: PkiPaths) -> None:
    signed = signer.sign(encode(coffee), "image/jpeg", CLAIM)
    assert read_manifest(signed.data, "image/jpeg").state == "Valid"
    if pki.root_cert != es256_pki.root_cert:  # another deployment's root does not vouch for ours
        assert read_manifest(signed.data, "image/jpeg", pki.root_cert.read_bytes()).state == "Valid"


def test_flipped_image_byte_is_invalid(signer: C2paSigner, astronaut: np.ndarray,
                                       es256_pki: PkiPaths) -> None:
    signed = bytearray(signer.sign(encode(astronaut), "image/jpeg", CLAIM).data)
    signed[-200] ^= 0x01  # inside the entropy-coded scan, after the manifest segments
    report = read_manifest(bytes(signed), "image/jpeg", es256_pki.root_cert.read_bytes())
    assert report.state == "Invalid"
    assert any(e["code"] == "assertion.dataHash.mismatch" for e in report.validation_errors)


def test_unsigned_file_has_no_manifest(astronaut: np.ndarray) -> None:
    report = read_manifest(encode(astronaut), "image/jpeg")
    assert report.state == "ManifestNotFound" and report.decision is None


def test_thumbnail_off_by_default(signer: C2paSigner, es256_pki: PkiPaths, astronaut: np.ndarray) -> None:
    src = encode(astronaut)
    with_thumb = C2paSigner.from_files(es256_pki.signing_cert_chain, es256_pki.signing_key, thumbnails=True)
    for sgn, expect in ((signer, False), (with_thumb, True)):
        data = sgn.sign(src, "image/jpeg", CLAIM).data
        reader = c2pa.Reader("image/jpeg", io.BytesIO(data))
        store = json.loads(reader.json())
        reader.close()
        assert ("thumbnail" in store["manifests"][store["active_manifest"]]) is expect


def test_claim_without_watermark_or_agent(signer: C2paSigner, coffee: np.ndarray,
                                          es256_pki: PkiPaths) -> None:
    claim = ReleaseClaim(decision_id="d", policy_digest="p")
    report = read_manifest(signer.sign(encode(coffee), "image/jpeg", claim).data, "image/jpeg",
                           es256_pki.root_cert.read_bytes())
    assert report.state == "Trusted" and report.soft_binding is None and report.software_agent is None
    assert report.decision is not None and report.decision["grant_ids"] == []


def _tiny_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = np.full((48, 64, 3), i * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def test_mp4_signs_the_same_way(signer: C2paSigner, es256_pki: PkiPaths) -> None:
    signed = signer.sign(_tiny_mp4(), "video/mp4", CLAIM)
    report = read_manifest(signed.data, "video/mp4", es256_pki.root_cert.read_bytes())
    assert report.state == "Trusted" and report.decision is not None


def test_stripped_jpeg_keeps_the_watermark(signer: C2paSigner, astronaut: np.ndarray,
                                           es256_pki: PkiPaths) -> None:
    marker = DwtDctSvdWatermarker()
    wm_id = 0x3C_0FFE_E123
    claim = ReleaseClaim(decision_id="d1", policy_digest="p", watermark_id=wm_id,
                         watermark_method="dwtDctSvd")
    signed = signer.sign(encode(marker.embed(astronaut, wm_id), quality=95), "image/jpeg", claim)
    assert read_manifest(signed.data, "image/jpeg", es256_pki.root_cert.read_bytes()).state == "Trusted"
    stripped = encode(decode(signed.data), "JPEG", quality=75)
    assert read_manifest(stripped, "image/jpeg").state == "ManifestNotFound"
    assert marker.detect(decode(stripped)).wm_id == wm_id


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())


def test_self_signed_signing_certificate_is_refused(coffee: np.ndarray) -> None:
    cert, key = _self_signed()
    with pytest.raises(SigningError):
        C2paSigner(cert, key, "es256").sign(encode(coffee), "image/jpeg", CLAIM)


def test_fault_hook_and_bad_inputs(signer: C2paSigner, coffee: np.ndarray) -> None:
    signer.faults.fail_next = True
    with pytest.raises(SigningError, match="injected"):
        signer.sign(encode(coffee), "image/jpeg", CLAIM)
    assert signer.sign(encode(coffee), "image/jpeg", CLAIM).data  # the hook fires once
    with pytest.raises(SigningError):
        signer.sign(b"not an image", "image/jpeg", CLAIM)
    with pytest.raises(SigningError):
        signer.sign(encode(coffee), "application/x-unknown", CLAIM)
