"""Why: the steps every decision shares, whatever the media — pick the tenant's policy runtime,
decode the images under the deployment's limits, append the record to the audit log before
anything is answered — written once for the image path (`service`), the video path (`video`) and
the proxy (`proxy`)."""

from __future__ import annotations

import secrets
import time

from gateway.audio.intake import AudioLimits, DecodedAudio, decode_audio, sniff_audio
from gateway.errors import BadInput, NotReady, TooLarge
from gateway.media import DecodedImage, decode_image
from gateway.pipeline.errors import AuditUnavailable
from gateway.pipeline.ports import PipelineConfig, PipelinePorts, PolicySource
from gateway.pipeline.record import AuditRef, DecisionRecord
from gateway.pipeline.threads import in_thread
from gateway.policy.runtime import PolicyRuntime
from gateway.requestlog import observe

__all__ = ["append", "decode_audio_parts", "decode_images", "is_audio", "new_id", "runtime_for"]


def new_id() -> str:
    """A random 128-bit id (hex): decision ids, request ids."""
    return secrets.token_hex(16)


def runtime_for(policies: PolicySource, tenant: str) -> tuple[PolicyRuntime, str]:
    """The runtime of `tenant`'s policy (its overlay, else the base) and the bundle digest; 503
    while no policy was ever loaded."""
    active = policies.active
    if active is None:
        raise NotReady("no policy is loaded")
    return active.for_tenant(tenant), active.bundle.digest


async def decode_images(parts: list[bytes], config: PipelineConfig) -> list[DecodedImage]:
    if len(parts) > config.max_media_parts:
        raise TooLarge(f"{len(parts)} media parts; the limit is {config.max_media_parts}")
    return [await in_thread(decode_image, data, config.limits, index=i) for i, data in enumerate(parts)]


def is_audio(data: bytes) -> bool:
    """Whether a media part is audio (sniffed from its first bytes, like every other type)."""
    return sniff_audio(data) is not None


async def decode_audio_parts(parts: list[bytes], config: PipelineConfig) -> list[DecodedAudio]:
    """Every part must be audio: a request mixes no audio with images (send them apart)."""
    if len(parts) > config.max_media_parts:
        raise TooLarge(f"{len(parts)} media parts; the limit is {config.max_media_parts}")
    if not all(is_audio(p) for p in parts):
        raise BadInput("audio is checked on its own: send images and audio in separate requests",
                       code="mixed_media")
    limits = AudioLimits(max_bytes=config.limits.max_bytes)
    return [await in_thread(decode_audio, data, limits, index=i) for i, data in enumerate(parts)]


async def append(ports: PipelinePorts, record: DecisionRecord) -> DecisionRecord:
    """Append the record to the audit log and note where it landed; nothing may be answered if
    this fails (AuditUnavailable, 503)."""
    start = time.perf_counter()
    try:
        appended = await in_thread(ports.audit.append, record.to_dict(with_audit=False))
    except Exception as exc:  # noqa: BLE001 - the log is down: refuse, fail closed
        raise AuditUnavailable(f"the audit log could not record the decision ({type(exc).__name__}); "
                               "nothing was released") from None
    finally:
        observe(ports.metrics.stage_seconds, "audit", time.perf_counter() - start)
    record.audit = AuditRef(appended.index, appended.leaf_hash, appended.checkpoint)
    return record
