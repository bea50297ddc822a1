"""C2PA manifests for released media: sign with our claim, read back and validate.

Why: the manifest is the verifiable, human-readable half of provenance (the watermark is the
half that survives metadata stripping). A release carries one manifest with:

- ``c2pa.actions`` (stored as ``c2pa.actions.v2``): one ``c2pa.created`` action, digitalSourceType
  ``trainedAlgorithmicMedia``, ``softwareAgent`` = the upstream model (name, version) when known;
- ``c2pa.soft-binding``: the watermark (``alg`` = ``org.consentgate.watermark.<method>.v<version>``, one block
  whose ``value`` is the base64 of the watermark id, big-endian, as few bytes as the id space needs);
- ``org.consentgate.decision``: decision id, policy digest, grant ids, watermark id, method and version.

The audit index is *not* in the manifest: the audit entry is appended after signing and records
``manifest_digest`` instead. ``manifest_digest`` is the lowercase hex SHA-256 of the JUMBF
manifest store that ``c2pa.Builder.sign`` returns (the exact bytes c2pa embeds in the file,
before the container format splits them into segments or boxes).

Thumbnails are off by default. Signing keys: ES256 or Ed25519 from PEM files (``keys``); the
mime type is passed through, so video (``video/mp4``) signs the same way as images.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import c2pa

from gateway.provenance.errors import SigningError
from gateway.provenance.keys import Alg, load_private_key_alg

__all__ = [
    "DECISION_LABEL", "TRAINED_ALGORITHMIC_MEDIA", "C2paReport", "C2paSigner", "ReleaseClaim", "SignedMedia",
    "SignerFaults", "SoftwareAgent", "build_manifest", "read_manifest",
]

DECISION_LABEL = "org.consentgate.decision"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = {"name": "consentgate", "version": "0.1.0"}
_ALGS: dict[str, Any] = {"es256": c2pa.C2paSigningAlg.ES256, "ed25519": c2pa.C2paSigningAlg.ED25519}

State = Literal["Trusted", "Valid", "Invalid", "ManifestNotFound"]


@dataclass(frozen=True)
class SoftwareAgent:
    name: str
    version: str | None = None


@dataclass(frozen=True)
class ReleaseClaim:
    """What the manifest says about one release."""

    decision_id: str
    policy_digest: str
    grant_ids: tuple[str, ...] = ()
    watermark_id: int | None = None
    watermark_method: str | None = None
    watermark_version: str = "1"
    software_agent: SoftwareAgent | None = None
    title: str | None = None


@dataclass(frozen=True)
class SignedMedia:
    data: bytes
    manifest_digest: str


@dataclass
class SignerFaults:
    """Fault hook for tests: set ``fail_next`` and the next ``sign`` raises ``SigningError``."""

    fail_next: bool = False
    fail_always: bool = False

    def check(self) -> None:
        if self.fail_always or self.fail_next:
            self.fail_next = False
            raise SigningError("injected fault in C2PA signing")


def _watermark_bytes(wm_id: int) -> bytes:
    return wm_id.to_bytes(max(1, (wm_id.bit_length() + 7) // 8), "big")


def build_manifest(claim: ReleaseClaim) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes for ``claim``."""
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    if claim.software_agent is not None:
        agent = {"name": claim.software_agent.name}
        if claim.software_agent.version:
            agent["version"] = claim.software_agent.version
        action["softwareAgent"] = agent
    decision = {
        "decision_id": claim.decision_id,
        "policy_digest": claim.policy_digest,
        "grant_ids": list(claim.grant_ids),
        "watermark_id": claim.watermark_id,
        "watermark_method": claim.watermark_method,
    }
    if claim.watermark_method:
        decision["watermark_version"] = claim.watermark_version
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": [action]}},
        {"label": DECISION_LABEL, "data": decision},
    ]
    if claim.watermark_id is not None and claim.watermark_method:
        value = base64.b64encode(_watermark_bytes(claim.watermark_id)).decode()
        assertions.insert(1, {"label": SOFT_BINDING_LABEL, "data": {
            "alg": f"org.consentgate.watermark.{claim.watermark_method}.v{claim.watermark_version}",
            "blocks": [{"scope": {}, "value": value}],
        }})
    return {
        "claim_generator_info": [GENERATOR],
        "title": claim.title or "consentgate release",
        "assertions": assertions,
    }


class C2paSigner:
    """Signs media with one certificate chain and key. Safe to share between threads."""

    def __init__(self, cert_chain_pem: bytes, key_pem: bytes, alg: Alg, *, thumbnails: bool = False) -> None:
        if alg not in _ALGS:
            raise SigningError(f"unsupported C2PA signing algorithm {alg!r} (es256 or ed25519)")
        self.alg = alg
        self.faults = SignerFaults()
        self._lock = threading.Lock()
        self._context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": thumbnails}}})
        try:
            self._signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, cert_chain_pem, key_pem, None))
        except Exception as exc:
            raise SigningError(f"cannot load C2PA signer: {exc}") from exc

    @classmethod
    def from_files(cls, cert_chain_path: Path | str, key_path: Path | str, alg: Alg | None = None,
                   *, thumbnails: bool = False) -> C2paSigner:
        """Load PEM files; ``alg`` defaults to the key's own algorithm."""
        key_path = Path(key_path)
        try:
            chain = Path(cert_chain_path).read_bytes()
            key = key_path.read_bytes()
        except OSError as exc:
            raise SigningError(f"cannot read signing credentials: {exc}") from exc
        return cls(chain, key, alg or load_private_key_alg(key_path), thumbnails=thumbnails)

    def sign(self, data: bytes, mime: str, claim: ReleaseClaim) -> SignedMedia:
        """Embed a signed manifest for ``claim`` into ``data`` (any mime type c2pa supports)."""
        self.faults.check()
        manifest = build_manifest(claim)
        out = io.BytesIO()
        try:
            with self._lock:
                builder = c2pa.Builder(manifest, self._context)  # single use
                store = builder.sign(self._signer, mime, io.BytesIO(data), out)
        except Exception as exc:
            raise SigningError(f"C2PA signing failed for {mime}: {exc}") from exc
        return SignedMedia(data=out.getvalue(), manifest_digest=hashlib.sha256(store).hexdigest())


@dataclass(frozen=True)
class C2paReport:
    state: State
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    assertions: dict[str, Any] = field(default_factory=dict)  # label -> data, active manifest
    decision: dict[str, Any] | None = None
    software_agent: dict[str, Any] | None = None
    soft_binding: dict[str, Any] | None = None
    signature_info: dict[str, Any] | None = None
    title: str | None = None


def read_manifest(data: bytes, mime: str, trust_anchors_pem: bytes | None = None) -> C2paReport:
    """Validate the file's C2PA manifest. ``Trusted`` needs the signer's root in ``trust_anchors_pem``."""
    settings: dict[str, Any] = {}
    if trust_anchors_pem:
        settings["trust"] = {"user_anchors": trust_anchors_pem.decode()}
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), None, c2pa.Context.from_dict(settings))
    except Exception as exc:  # c2pa raises for "no manifest" and for unreadable containers alike
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return C2paReport(state="ManifestNotFound")
        error = {"code": "c2pa.read_error", "explanation": str(exc)}
        return C2paReport(state="Invalid", validation_errors=[error])
    try:
        store = json.loads(reader.json())
        state = str(reader.get_validation_state() or "Invalid")
    finally:
        reader.close()
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    assertions = {a["label"]: a.get("data") for a in active.get("assertions", [])}
    failures = store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    agent = None
    for label in ("c2pa.actions.v2", "c2pa.actions"):
        for action in (assertions.get(label) or {}).get("actions", []):
            if action.get("action") == "c2pa.created" and action.get("softwareAgent") is not None:
                agent = action["softwareAgent"]
    if state not in ("Trusted", "Valid", "Invalid"):
        state = "Invalid"
    return C2paReport(
        state=state,  # type: ignore[arg-type]
        validation_errors=list(failures),
        assertions=assertions,
        decision=assertions.get(DECISION_LABEL),
        software_agent=agent if isinstance(agent, dict) else ({"name": agent} if agent else None),
        soft_binding=assertions.get(SOFT_BINDING_LABEL),
        signature_info=active.get("signature_info"),
        title=active.get("title"),
    )
