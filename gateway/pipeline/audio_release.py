"""Why: released audio must lead back to its decision like images and video (issue #18 point 5):
after an allow, the audio is marked (`gateway.audio.watermark`, the shared 72-bit payload, id
reserved in the watermark ledger first), re-encoded in the type it came in, C2PA-signed where
c2pa-python signs that type, and noted in the record (output digest, manifest digest, watermark
id). Ogg (Opus/Vorbis) is released as FLAC, which c2pa-python signs and which loses nothing. Any
failure after the allow turns the record into a deny naming the stage, and nothing leaves.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.audio.encode import RELEASE_BITRATE, encode_channels
from gateway.audio.intake import DecodedAudio, decode_native
from gateway.audio.watermark import mark_samples
from gateway.errors import GatewayError
from gateway.pipeline.errors import release_stage
from gateway.pipeline.ports import Releaser
from gateway.pipeline.record import DecisionRecord, OutputRef
from gateway.pipeline.release import ReleasedFile, stage_failed
from gateway.pipeline.threads import in_thread
from gateway.provenance.c2pa_sign import ReleaseClaim
from gateway.provenance.errors import ProvenanceError, WatermarkError
from gateway.provenance.payload import DWT_PAYLOAD

__all__ = ["AUDIO_MARK", "RELEASE_TYPE", "release_audio"]

AUDIO_MARK = "audio-qim"
AUDIO_MARK_VERSION = "1"
# the type an audio release comes back in (the input's, except Ogg: FLAC, which C2PA can sign)
RELEASE_TYPE = {"audio/wav": "audio/wav", "audio/flac": "audio/flac", "audio/mpeg": "audio/mpeg",
                "audio/mp4": "audio/mp4", "audio/ogg": "audio/flac"}
_LOSSY = {"audio/mpeg", "audio/mp4"}


def _draw(_method: str) -> int:
    return DWT_PAYLOAD.new_id()


def _mark_and_encode(data: bytes, audio: DecodedAudio, wm_id: int | None, out_mime: str) -> bytes:
    if wm_id is None and out_mime == audio.mime:
        return data
    channels, rate = decode_native(data, audio.mime)
    if wm_id is not None:
        channels = mark_samples(channels, rate, audio.samples, wm_id)
    return encode_channels(channels, rate, out_mime, bitrate=RELEASE_BITRATE if out_mime in _LOSSY else None)


async def release_audio(releaser: Releaser, record: DecisionRecord, obligations: dict[str, Any],
                        audio: DecodedAudio, data: bytes) -> list[ReleasedFile]:
    """Carry out an allowed decision's obligations on one audio file and note the output."""
    if not record.allowed:
        return []
    watermarking = obligations.get("watermark") is not None
    out_mime = RELEASE_TYPE[audio.mime]
    wm_id: int | None = None
    try:
        if watermarking:
            wm_id = await in_thread(releaser.reserve_watermark_id, AUDIO_MARK, record.decision_id, _draw)
        try:
            marked = await in_thread(_mark_and_encode, data, audio, wm_id, out_mime)
        except (GatewayError, ValueError, RuntimeError) as exc:
            raise WatermarkError(f"marking the audio failed: {exc}") from exc
        claim = ReleaseClaim(decision_id=record.decision_id, policy_digest=record.policy.digest,
                             grant_ids=tuple(record.grant_ids), watermark_id=wm_id,
                             watermark_method=AUDIO_MARK if wm_id is not None else None,
                             watermark_version=AUDIO_MARK_VERSION,
                             title=f"consentgate release {record.decision_id}")
        signed = await in_thread(releaser.finish_video, marked, out_mime, claim=claim,
                                 sign=bool(obligations.get("sign")),
                                 watermark=(AUDIO_MARK, wm_id) if wm_id is not None else None)
    except ProvenanceError as exc:
        if wm_id is not None:
            await in_thread(releaser.discard_watermarks, AUDIO_MARK, record.decision_id)
        record.deny(stage_failed(release_stage(exc), exc))
        return []
    record.outputs.append(OutputRef(0, hashlib.sha256(signed.data).hexdigest(), out_mime,
                                    signed.manifest_digest or None,
                                    f"{AUDIO_MARK}:{wm_id}" if wm_id is not None else None,
                                    AUDIO_MARK_VERSION if wm_id is not None else None))
    return [ReleasedFile(signed.data, out_mime)]
