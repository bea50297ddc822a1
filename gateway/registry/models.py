"""Why: the registry's tables (main database) and the read models the API returns instead of rows.

Everything that identifies a person — names, aliases, face templates, enrolment images — is stored sealed
under the subject's data key (see `crypto`). What stays in clear is what decisions and audits need and what
means nothing without the key store: random ids, flags, timestamps, grant terms, PDQ hashes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field, SQLModel

_TS = sa.DateTime(timezone=True)


def _ts(nullable: bool = False, index: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(_TS, nullable=nullable, index=index)


class RegistrySubject(SQLModel, table=True):
    __tablename__ = "registry_subjects"

    id: str = Field(primary_key=True, max_length=64)
    profile_ct: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))  # {display_name, aliases}
    protected: bool = Field(default=False)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_ts())


class RegistryFaceTemplate(SQLModel, table=True):
    __tablename__ = "registry_face_templates"
    __table_args__ = {"sqlite_autoincrement": True}  # seqs are never reused: replicas track them

    seq: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    enrolment_id: str = Field(foreign_key="registry_enrolments.id", max_length=64)
    model: str = Field(index=True, max_length=100)
    model_version: str = Field(max_length=100)
    dim: int
    embedding_ct: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class RegistryEnrolment(SQLModel, table=True):
    """One enrolment: who enrolled the subject, when, and which notice/consent text was accepted
    (the written release BIPA asks for)."""

    __tablename__ = "registry_enrolments"

    id: str = Field(primary_key=True, max_length=64)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    notice_version: str = Field(max_length=200)
    enrolled_by: str = Field(max_length=200)
    image_count: int
    created_at: datetime = Field(sa_column=_ts())


class RegistryEnrolmentImage(SQLModel, table=True):
    """Enrolment images kept (sealed, PNG inside) so templates can be recomputed for a new face model."""

    __tablename__ = "registry_enrolment_images"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    enrolment_id: str = Field(foreign_key="registry_enrolments.id", max_length=64)
    image_ct: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class RegistryGrant(SQLModel, table=True):
    __tablename__ = "registry_grants"

    id: str = Field(primary_key=True, max_length=64)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    grantee_tenant: str = Field(index=True, max_length=200)
    grantee_end_user: str | None = Field(default=None, max_length=200)
    uses: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    valid_from: datetime = Field(sa_column=_ts())
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_by: str | None = Field(default=None, max_length=200)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_ts())


class RegistryHash(SQLModel, table=True):
    """A perceptual hash (StopNCII-style) of an image that must never pass for this subject."""

    __tablename__ = "registry_hashes"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    algorithm: str = Field(default="pdq", max_length=32)
    hash_hex: str = Field(max_length=128)
    source: str = Field(max_length=16)  # "hex" (submitted) or "image" (hashed on receipt, image discarded)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_ts())


class RegistryState(SQLModel, table=True):
    """Change counters, one row (id=1), polled by every replica about once a second."""

    __tablename__ = "registry_state"

    id: int = Field(default=1, primary_key=True)
    faces: int = Field(default=0)
    names: int = Field(default=0)
    hashes: int = Field(default=0)


class RegistryAccessToken(SQLModel, table=True):
    """A subject access token: a bearer secret bound to one subject (the person's own access to their
    grants, uses and data). Stored as SHA-256 of the secret; shown once when issued."""

    __tablename__ = "registry_access_tokens"

    id: str = Field(primary_key=True, max_length=32)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    secret_sha256: str = Field(max_length=64)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())


class RegistryErasureRequest(SQLModel, table=True):
    """An erasure the subject asked for with their token, queued for a registrar (when the deployment
    does not erase at once)."""

    __tablename__ = "registry_erasure_requests"

    id: str = Field(primary_key=True, max_length=32)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    token_id: str = Field(max_length=32)
    requested_at: datetime = Field(sa_column=_ts())


class RegistryLease(SQLModel, table=True):
    """A named lease so one replica at a time runs a background job (the retention sweeper)."""

    __tablename__ = "registry_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=64)
    expires_at: datetime = Field(sa_column=_ts())


class RegistryLedgerState(SQLModel, table=True):
    """One row (id=1) once the consent ledger holds the registry's history: written with the one-time
    `snapshot` entries of a registry that predates the ledger (or at once on an empty one)."""

    __tablename__ = "registry_ledger_state"

    id: int = Field(default=1, primary_key=True)
    snapshot_at: datetime
    snapshot_entries: int = Field(default=0)


class RegistryTemplateRemoval(SQLModel, table=True):
    """Tombstones of removed templates, so replicas drop them from their in-memory index incrementally."""

    __tablename__ = "registry_template_removals"
    __table_args__ = {"sqlite_autoincrement": True}

    seq: int | None = Field(default=None, primary_key=True)
    template_seq: int = Field(index=True)
    model: str = Field(index=True, max_length=100)


class RegistryVoiceEnrolment(SQLModel, table=True):
    """One voice enrolment (issue #18): who enrolled the subject's voice, when, under which notice."""

    __tablename__ = "registry_voice_enrolments"

    id: str = Field(primary_key=True, max_length=64)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    notice_version: str = Field(max_length=200)
    enrolled_by: str = Field(max_length=200)
    clip_count: int
    created_at: datetime = Field(sa_column=_ts())


class RegistryVoiceTemplate(SQLModel, table=True):
    """A voice template (one per enrolment clip and voice model), sealed like face templates."""

    __tablename__ = "registry_voice_templates"
    __table_args__ = {"sqlite_autoincrement": True}  # seqs are never reused: replicas track them

    seq: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    enrolment_id: str = Field(foreign_key="registry_voice_enrolments.id", max_length=64)
    model: str = Field(index=True, max_length=100)
    model_version: str = Field(max_length=100)
    dim: int
    embedding_ct: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class RegistryVoiceClip(SQLModel, table=True):
    """Enrolment speech kept (sealed; 16 kHz mono 16-bit PCM inside) so voice templates can be recomputed."""

    __tablename__ = "registry_voice_clips"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(foreign_key="registry_subjects.id", index=True, max_length=64)
    enrolment_id: str = Field(foreign_key="registry_voice_enrolments.id", max_length=64)
    clip_ct: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


REGISTRY_TABLES = (
    RegistrySubject.__table__,  # type: ignore[attr-defined]
    RegistryEnrolment.__table__,  # type: ignore[attr-defined]
    RegistryFaceTemplate.__table__,  # type: ignore[attr-defined]
    RegistryEnrolmentImage.__table__,  # type: ignore[attr-defined]
    RegistryGrant.__table__,  # type: ignore[attr-defined]
    RegistryHash.__table__,  # type: ignore[attr-defined]
    RegistryState.__table__,  # type: ignore[attr-defined]
    RegistryTemplateRemoval.__table__,  # type: ignore[attr-defined]
    RegistryLedgerState.__table__,  # type: ignore[attr-defined]
    RegistryAccessToken.__table__,  # type: ignore[attr-defined]
    RegistryErasureRequest.__table__,  # type: ignore[attr-defined]
    RegistryLease.__table__,  # type: ignore[attr-defined]
    RegistryVoiceEnrolment.__table__,  # type: ignore[attr-defined]
    RegistryVoiceTemplate.__table__,  # type: ignore[attr-defined]
    RegistryVoiceClip.__table__,  # type: ignore[attr-defined]
)


# ---- read models: what the API returns (never templates, images or ciphertexts) ----


class SubjectPublic(BaseModel):
    id: str
    display_name: str
    aliases: list[str]
    protected: bool
    created_by: str
    created_at: datetime
    face_models: list[str] = []
    template_count: int = 0
    hash_count: int = 0
    voice_models: list[str] = []
    voice_template_count: int = 0


class GrantPublic(BaseModel):
    id: str
    subject_id: str
    grantee_tenant: str
    grantee_end_user: str | None
    uses: list[str]
    valid_from: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    created_by: str
    created_at: datetime


class EnrolmentResult(BaseModel):
    enrolment_id: str
    subject_id: str
    notice_version: str
    images: int
    templates: dict[str, int]  # face model -> templates stored
    images_kept: bool
    created_at: datetime


class HashAddResult(BaseModel):
    subject_id: str
    added: int
    hashes: list[str]


class VoiceEnrolmentResult(BaseModel):
    enrolment_id: str
    subject_id: str
    notice_version: str
    clips: int
    speech_seconds: list[float]  # per clip, as the voice activity detector heard it
    templates: dict[str, int]  # voice model -> templates stored
    clips_kept: bool
    created_at: datetime
