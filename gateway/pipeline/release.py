"""Why: release is check + obligations + provenance + record, in a fixed order: output check →
blur → watermark → C2PA sign → audit entry (with output and manifest digests) → answer. Any failure
after an allow turns the decision into a deny that is still recorded, and nothing leaves. The
failing stage is known by the error's type (`WatermarkError` / `SigningError`), never its text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

from gateway.decision import Reason
from gateway.media import DecodedImage
from gateway.pipeline.errors import release_stage
from gateway.pipeline.ports import Releaser
from gateway.pipeline.record import DecisionRecord, OutputRef
from gateway.pipeline.threads import in_thread
from gateway.provenance.errors import ProvenanceError
from gateway.requestlog import observe

__all__ = ["ReleasedFile", "release_images", "stage_failed"]


@dataclass(frozen=True)
class ReleasedFile:
    data: bytes
    mime: str


def stage_failed(stage: str, exc: BaseException) -> Reason:
    """The deny reason a failed release stage adds to the record."""
    return Reason(f"release.{stage}.failed", "deny",
                  f"{stage} failed ({type(exc).__name__}: {exc}); nothing released")


async def release_images(
    releaser: Releaser,
    record: DecisionRecord,
    obligations: dict[str, Any],
    images: list[DecodedImage],
    *,
    software_agent: dict[str, Any] | None = None,
    stage_seconds: Histogram | None = None,
) -> list[ReleasedFile]:
    """Carry out an allowed decision's obligations on every image and note the outputs in the
    record. On a stage failure the record becomes a deny naming the stage; nothing is returned."""
    if not record.allowed:
        return []
    files: list[ReleasedFile] = []
    try:
        for index, image in enumerate(images):
            released = await in_thread(
                releaser.release_image, image.rgb, image.mime, media_index=index,
                decision_id=record.decision_id, policy_digest=record.policy.digest,
                grant_ids=list(record.grant_ids), obligations=obligations, software_agent=software_agent,
            )
            if stage_seconds is not None:  # redact, watermark, encode, sign: timed by the releaser
                for name, seconds in released.timings.items():
                    observe(stage_seconds, name, seconds)
            record.outputs.append(OutputRef(released.media_index, released.sha256, released.mime,
                                            released.manifest_digest, released.watermark_id,
                                            released.watermark_version))
            files.append(ReleasedFile(released.data, released.mime))
    except ProvenanceError as exc:
        record.deny(stage_failed(release_stage(exc), exc))
        return []
    return files
