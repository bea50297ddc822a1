"""Why: the registry's write operations, kept apart from the decision-time lookups in `service`.

Each function takes the registry's `RegistryCore` (engine, crypto, analyzers, settings) and runs one transaction; the
service wraps them with the fault hook and database-error mapping. Nothing personal leaves here in clear:
names and templates are sealed before they are written, and the erasure receipt carries counts only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, col, delete, func, select

from gateway.registry.core import PROFILE, RegistryCore
from gateway.registry.enrolment import check_image, decode_png, embeddings_for, encode_png, single_face
from gateway.registry.errors import (
    AccessDenied,
    EnrolmentError,
    GrantNotFound,
    InvalidRequest,
    RegistryUnavailable,
    SubjectNotFound,
)
from gateway.registry.hashes import normalise_pdq_hex
from gateway.registry.ledger import append_entry, digest_of, ledger_record
from gateway.registry.models import (
    EnrolmentResult,
    GrantPublic,
    HashAddResult,
    RegistryAccessToken,
    RegistryEnrolment,
    RegistryEnrolmentImage,
    RegistryErasureRequest,
    RegistryFaceTemplate,
    RegistryGrant,
    RegistryHash,
    RegistryLedgerState,
    RegistrySubject,
    RegistryTemplateRemoval,
    RegistryVoiceTemplate,
    SubjectPublic,
)
from gateway.registry.records import (
    clean_text,
    grant_ledger_fields,
    grant_terms,
    rfc3339,
    subject_created_fields,
    subject_names,
    to_utc,
    utcnow,
)
from gateway.registry.store import bump, grant_fact, template_purpose
from gateway.registry.voices import erase_voice_rows

IMAGE = "enrolment_image"


def _entry(reg: RegistryCore, s: Session, kind: str, subject_id: str, actor: str, **fields: Any) -> int | None:
    """Append the ledger entry of this change inside session `s`'s transaction (before its commit)."""
    indexes = append_entry(reg.ledger, s, [ledger_record(kind, subject_id, actor, reg.ledger_tenant, **fields)])
    return indexes[0] if indexes else None


def _subject(s: Session, subject_id: str) -> RegistrySubject:
    row = s.get(RegistrySubject, subject_id)
    if row is None:
        raise SubjectNotFound(subject_id)
    return row


# ---- subjects ----
def create_subject(
    reg: RegistryCore,
    display_name: str,
    aliases: Sequence[str],
    protected: bool,
    created_by: str,
    subject_id: str,
) -> SubjectPublic:
    name, alias_list = subject_names(display_name, aliases)
    now = utcnow()
    reg.crypto.new_subject_key(subject_id)
    try:
        profile = json.dumps({"display_name": name, "aliases": alias_list}).encode()
        row = RegistrySubject(
            id=subject_id,
            profile_ct=reg.crypto.encrypt(subject_id, profile, PROFILE),
            protected=bool(protected),
            created_by=created_by,
            created_at=now,
        )
        with Session(reg.engine) as s:
            bump(s, "names")
            s.add(row)
            s.flush()
            _entry(reg, s, "subject", subject_id, created_by, **subject_created_fields(protected, len(alias_list)))
            s.commit()
    except BaseException:
        reg.crypto.shred(subject_id)  # no orphan key for a subject that was never written
        raise
    return SubjectPublic(
        id=subject_id,
        display_name=name,
        aliases=alias_list,
        protected=bool(protected),
        created_by=created_by,
        created_at=now,
    )


def _public(reg: RegistryCore, s: Session, rows: Sequence[RegistrySubject]) -> list[SubjectPublic]:
    ids = [r.id for r in rows]
    tmpl: dict[str, Counter[str]] = {i: Counter() for i in ids}
    for sid, model, n in s.exec(
        select(RegistryFaceTemplate.subject_id, RegistryFaceTemplate.model, func.count())
        .where(col(RegistryFaceTemplate.subject_id).in_(ids))
        .group_by(col(RegistryFaceTemplate.subject_id), col(RegistryFaceTemplate.model))
    ).all():
        tmpl[sid][model] = int(n)
    hashes = dict(
        s.exec(
            select(RegistryHash.subject_id, func.count())
            .where(col(RegistryHash.subject_id).in_(ids))
            .group_by(col(RegistryHash.subject_id))
        ).all()
    )
    voice: dict[str, Counter[str]] = {i: Counter() for i in ids}
    for sid, model, n in s.exec(
        select(RegistryVoiceTemplate.subject_id, RegistryVoiceTemplate.model, func.count())
        .where(col(RegistryVoiceTemplate.subject_id).in_(ids))
        .group_by(col(RegistryVoiceTemplate.subject_id), col(RegistryVoiceTemplate.model))
    ).all():
        voice[sid][model] = int(n)
    out = []
    for r in rows:
        p = reg.profile(r)
        out.append(
            SubjectPublic(
                id=r.id,
                display_name=p["display_name"],
                aliases=p.get("aliases", []),
                protected=r.protected,
                created_by=r.created_by,
                created_at=to_utc(r.created_at),
                face_models=sorted(tmpl[r.id]),
                template_count=sum(tmpl[r.id].values()),
                hash_count=int(hashes.get(r.id, 0)),
                voice_models=sorted(voice[r.id]),
                voice_template_count=sum(voice[r.id].values()),
            )
        )
    return out


def list_subjects(reg: RegistryCore, offset: int, limit: int) -> list[SubjectPublic]:
    with Session(reg.engine) as s:
        rows = s.exec(
            select(RegistrySubject)
            .order_by(col(RegistrySubject.created_at), col(RegistrySubject.id))
            .offset(max(offset, 0))
            .limit(min(max(limit, 1), 1000))
        ).all()
        return _public(reg, s, rows)


def get_subject(reg: RegistryCore, subject_id: str) -> SubjectPublic:
    with Session(reg.engine) as s:
        return _public(reg, s, [_subject(s, subject_id)])[0]


# ---- enrolment ----
def enroll(
    reg: RegistryCore, subject_id: str, images: Sequence[np.ndarray], notice_version: str, enrolled_by: str
) -> EnrolmentResult:
    notice = clean_text(notice_version, "notice_version")
    if not 1 <= len(images) <= reg.max_images:
        raise EnrolmentError(
            "image_count", f"enrolment takes 1 to {reg.max_images} images, got {len(images)}"
        )
    imgs = [check_image(img, i) for i, img in enumerate(images)]
    if not reg.face_analyzers:
        raise RegistryUnavailable("no face model is attached to the consent registry yet (no active policy)")
    with Session(reg.engine) as s:
        _subject(s, subject_id)
    # every image must pass every model's gate before anything is written
    per_model = {name: embeddings_for(a, imgs, reg.gate) for name, a in sorted(reg.face_analyzers.items())}
    enrolment_id = secrets.token_hex(16)
    now = utcnow()
    sealed_images = (
        [reg.crypto.encrypt(subject_id, encode_png(img), IMAGE) for img in imgs]
        if reg.keep_enrolment_images
        else []
    )
    with Session(reg.engine) as s:
        bump(s, "faces")
        _subject(s, subject_id)  # still there (not erased meanwhile)
        s.add(
            RegistryEnrolment(
                id=enrolment_id,
                subject_id=subject_id,
                notice_version=notice,
                enrolled_by=enrolled_by,
                image_count=len(imgs),
                created_at=now,
            )
        )
        s.flush()
        for name, embs in per_model.items():
            s.add_all(_templates(reg, subject_id, enrolment_id, name, embs, now))
        s.add_all(
            RegistryEnrolmentImage(
                subject_id=subject_id, enrolment_id=enrolment_id, image_ct=ct, created_at=now
            )
            for ct in sealed_images
        )
        s.flush()
        _entry(reg, s, "enrolment", subject_id, enrolled_by, enrolment_id=enrolment_id, modality="face",
               image_count=len(imgs), notice_version=notice, images_kept=bool(sealed_images),
               templates={n: len(e) for n, e in per_model.items()},
               models={n: reg.face_analyzers[n].info.version for n in per_model})
        s.commit()
    return EnrolmentResult(
        enrolment_id=enrolment_id,
        subject_id=subject_id,
        notice_version=notice,
        images=len(imgs),
        templates={n: len(e) for n, e in per_model.items()},
        images_kept=bool(sealed_images),
        created_at=now,
    )


def _templates(
    reg: RegistryCore, subject_id: str, enrolment_id: str, model: str, embs: list[np.ndarray], now: datetime
) -> list[RegistryFaceTemplate]:
    analyzer = reg.face_analyzers[model]
    version = analyzer.info.version
    purpose = template_purpose(model, version)
    return [
        RegistryFaceTemplate(
            subject_id=subject_id,
            enrolment_id=enrolment_id,
            model=model,
            model_version=version,
            dim=int(e.size),
            embedding_ct=reg.crypto.encrypt(subject_id, e.astype(np.float32).tobytes(), purpose),
            created_at=now,
        )
        for e in embs
    ]


def _tombstone(s: Session, rows: Sequence[tuple[int | None, str]]) -> int:
    s.add_all(RegistryTemplateRemoval(template_seq=seq or 0, model=model) for seq, model in rows)
    return len(rows)


def reembed(reg: RegistryCore, model_name: str) -> dict[str, Any]:
    analyzer = reg.analyzer(model_name)
    counts = {"subjects": 0, "templates": 0, "skipped_images": 0, "removed": 0}
    with Session(reg.engine) as s:
        subject_ids = list(s.exec(select(RegistryEnrolmentImage.subject_id).distinct()).all())
    for subject_id in subject_ids:
        with Session(reg.engine) as s:
            rows = s.exec(
                select(RegistryEnrolmentImage)
                .where(RegistryEnrolmentImage.subject_id == subject_id)
                .order_by(col(RegistryEnrolmentImage.id))
            ).all()
            fresh: list[RegistryFaceTemplate] = []
            now = utcnow()
            for i, row in enumerate(rows):
                img = decode_png(reg.crypto.decrypt(subject_id, row.image_ct, IMAGE))
                try:
                    face = single_face(analyzer, img, i, reg.gate)
                except EnrolmentError:
                    counts["skipped_images"] += 1
                    continue
                assert face.embedding is not None
                fresh += _templates(
                    reg,
                    subject_id,
                    row.enrolment_id,
                    model_name,
                    [np.asarray(face.embedding, np.float32)],
                    now,
                )
            bump(s, "faces")
            old = s.exec(
                select(RegistryFaceTemplate.seq, RegistryFaceTemplate.model).where(
                    RegistryFaceTemplate.subject_id == subject_id, RegistryFaceTemplate.model == model_name
                )
            ).all()
            counts["removed"] += _tombstone(s, old)
            s.exec(
                delete(RegistryFaceTemplate).where(
                    col(RegistryFaceTemplate.subject_id) == subject_id,
                    col(RegistryFaceTemplate.model) == model_name,
                )
            )
            s.add_all(fresh)
            s.flush()
            _entry(reg, s, "enrolment", subject_id, "reembed", event="reembedded", modality="face",
                   model=model_name, model_version=analyzer.info.version, templates=len(fresh),
                   removed=len(old))
            s.commit()
        counts["subjects"] += 1
        counts["templates"] += len(fresh)
    return {"model": model_name, "model_version": analyzer.info.version, **counts}


# ---- grants ----
def _grant_public(g: RegistryGrant) -> GrantPublic:
    fact = grant_fact(g)
    return GrantPublic(
        id=fact.id,
        subject_id=fact.subject_id,
        grantee_tenant=fact.grantee_tenant,
        grantee_end_user=fact.grantee_end_user,
        uses=list(fact.uses),
        valid_from=fact.valid_from,
        expires_at=fact.expires_at,
        revoked_at=fact.revoked_at,
        revoked_by=g.revoked_by,
        created_by=g.created_by,
        created_at=to_utc(g.created_at),
    )


def grant(
    reg: RegistryCore,
    subject_id: str,
    grantee_tenant: str,
    grantee_end_user: str | None,
    uses: Sequence[str],
    expires_at: datetime | None,
    valid_from: datetime | None,
    created_by: str,
) -> GrantPublic:
    now = utcnow()
    terms = grant_terms(grantee_tenant, grantee_end_user, uses, expires_at, valid_from, now)
    row = RegistryGrant(
        id=secrets.token_hex(16),
        subject_id=subject_id,
        grantee_tenant=terms.grantee_tenant,
        grantee_end_user=terms.grantee_end_user,
        uses=terms.uses,
        valid_from=terms.valid_from,
        expires_at=terms.expires_at,
        created_by=created_by,
        created_at=now,
    )
    with Session(reg.engine) as s:
        _subject(s, subject_id)
        s.add(row)
        s.flush()
        _entry(reg, s, "grant", subject_id, created_by, grant=_grant_fields(row, reg))
        s.commit()
        s.refresh(row)
        return _grant_public(row)


def _grant_fields(g: RegistryGrant, reg: RegistryCore | None = None) -> dict[str, Any]:
    """A grant as the ledger records it (`records.grant_ledger_fields`): the grantee end user as a keyed
    hash under the grantee tenant's end-user key, like the end users of decisions."""
    fact = grant_fact(g)
    end_user = fact.grantee_end_user
    if end_user is not None and reg is not None:
        end_user = reg.pseudonyms.pseudonym(fact.grantee_tenant, end_user)
    return grant_ledger_fields(fact.id, fact.grantee_tenant, end_user, fact.uses, fact.valid_from, fact.expires_at)


def revoke(reg: RegistryCore, grant_id: str, by: str) -> GrantPublic:
    with Session(reg.engine) as s:
        row = s.get(RegistryGrant, grant_id)
        if row is None:
            raise GrantNotFound(grant_id)
        if row.revoked_at is None:  # idempotent: the first revocation's time and actor stand
            row.revoked_at = utcnow()
            row.revoked_by = by
            s.add(row)
            s.flush()
            _entry(reg, s, "revocation", row.subject_id, by, grant_id=row.id,
                   revoked_at=rfc3339(to_utc(row.revoked_at)))
            s.commit()
            s.refresh(row)
        return _grant_public(row)


def get_grant(reg: RegistryCore, grant_id: str) -> GrantPublic:
    with Session(reg.engine) as s:
        row = s.get(RegistryGrant, grant_id)
        if row is None:
            raise GrantNotFound(grant_id)
        return _grant_public(row)


def list_grants(reg: RegistryCore, subject_id: str) -> list[GrantPublic]:
    with Session(reg.engine) as s:
        _subject(s, subject_id)
        rows = s.exec(
            select(RegistryGrant)
            .where(RegistryGrant.subject_id == subject_id)
            .order_by(col(RegistryGrant.created_at))
        ).all()
        return [_grant_public(g) for g in rows]


# ---- hash lists ----
def add_hashes(
    reg: RegistryCore, subject_id: str, hex_list: Sequence[str], images: Sequence[np.ndarray], created_by: str
) -> HashAddResult:
    entries = [(normalise_pdq_hex(h), "hex") for h in hex_list]
    if images:
        if reg.hasher is None:
            raise InvalidRequest("no perceptual hasher is configured: submit PDQ hashes as hex")
        entries += [(reg.hasher.hashes(check_image(img, i))[0], "image") for i, img in enumerate(images)]
    if not entries:
        raise InvalidRequest("no hashes or images given")
    now = utcnow()
    with Session(reg.engine) as s:
        bump(s, "hashes")
        _subject(s, subject_id)
        existing = set(
            s.exec(select(RegistryHash.hash_hex).where(RegistryHash.subject_id == subject_id)).all()
        )
        new = list(dict.fromkeys(h for h, _ in entries if h not in existing))
        source = dict(entries)
        s.add_all(
            RegistryHash(
                subject_id=subject_id, hash_hex=h, source=source[h], created_by=created_by, created_at=now
            )
            for h in new
        )
        s.flush()
        if new:
            _entry(reg, s, "hash", subject_id, created_by, added=len(new), list_digest=digest_of(new),
                   sources=sorted({source[h] for h in new}))
        s.commit()
    return HashAddResult(subject_id=subject_id, added=len(new), hashes=[h for h, _ in entries])


# ---- erasure ----
def erase(reg: RegistryCore, subject_id: str, by: str, *, kind: str = "erasure",
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    with Session(reg.engine) as s:
        _subject(s, subject_id)
    # shred first: from here on every sealed row of this subject (and every backup of it) is noise
    key_destroyed = reg.crypto.shred(subject_id)
    counts: dict[str, int] = {}
    with Session(reg.engine) as s:
        bump(s, "faces", "names", "hashes")
        templates = s.exec(
            select(RegistryFaceTemplate.seq, RegistryFaceTemplate.model).where(
                RegistryFaceTemplate.subject_id == subject_id
            )
        ).all()
        _tombstone(s, templates)
        counts.update(erase_voice_rows(s, subject_id))  # voices are likenesses too (issue #18)
        for label, table in (
            ("face_templates", RegistryFaceTemplate),
            ("enrolment_images", RegistryEnrolmentImage),
            ("enrolments", RegistryEnrolment),
            ("grants", RegistryGrant),
            ("hashes", RegistryHash),
            ("access_tokens", RegistryAccessToken),
            ("erasure_requests", RegistryErasureRequest),
            ("subjects", RegistrySubject),
        ):
            column = getattr(table, "id" if table is RegistrySubject else "subject_id")
            result = s.exec(delete(table).where(col(column) == subject_id))
            counts[label] = int(result.rowcount)
        counts["subject_keys"] = int(key_destroyed)
        receipt = ledger_record(kind, subject_id, by, reg.ledger_tenant, receipt_id=secrets.token_hex(16),
                                counts=counts, **(extra or {}))
        # In the same transaction as the deletion: no erasure without its receipt. The key is
        # already shredded (privacy first); if this append fails the rows stay, unreadable, and
        # erasing again completes the deletion with its receipt.
        indexes = append_entry(reg.ledger, s, [receipt])
        s.commit()
    return {**receipt, "audit": {"index": indexes[0] if indexes else None}}


# ---- the ledger's starting point ----
def snapshot(reg: RegistryCore) -> int:
    """Once per database: append a `snapshot` entry per subject (with its enrolments and hash count)
    and per grant that exist before the consent ledger does, and mark it done in the same
    transaction. Returns how many entries were appended (0 when already done or no ledger)."""
    if reg.ledger is None:
        return 0
    with Session(reg.engine) as s:
        if s.get(RegistryLedgerState, 1) is not None:
            return 0
    with Session(reg.engine) as s:
        bump(s, "names")  # the state row lock: replicas starting together take turns
        if s.get(RegistryLedgerState, 1) is not None:
            return 0
        tenant, records = reg.ledger_tenant, []
        enrolments: dict[str, list[dict[str, Any]]] = {}
        for e in s.exec(select(RegistryEnrolment).order_by(col(RegistryEnrolment.created_at))).all():
            enrolments.setdefault(e.subject_id, []).append(
                {"enrolment_id": e.id, "modality": "face", "notice_version": e.notice_version,
                 "image_count": e.image_count, "enrolled_at": rfc3339(to_utc(e.created_at))})
        hash_counts = dict(s.exec(select(RegistryHash.subject_id, func.count())
                                  .group_by(col(RegistryHash.subject_id))).all())
        for subj in s.exec(select(RegistrySubject).order_by(col(RegistrySubject.created_at))).all():
            records.append(ledger_record("snapshot", subj.id, "migration", tenant, object="subject",
                                         protected=subj.protected, registered_at=rfc3339(to_utc(subj.created_at)),
                                         enrolments=enrolments.get(subj.id, []),
                                         hashes=int(hash_counts.get(subj.id, 0))))
        for g in s.exec(select(RegistryGrant).order_by(col(RegistryGrant.created_at))).all():
            revoked = rfc3339(to_utc(g.revoked_at)) if g.revoked_at else None
            records.append(ledger_record("snapshot", g.subject_id, "migration", tenant, object="grant",
                                         grant=_grant_fields(g, reg), revoked_at=revoked,
                                         granted_at=rfc3339(to_utc(g.created_at))))
        append_entry(reg.ledger, s, records)
        s.add(RegistryLedgerState(id=1, snapshot_at=utcnow(), snapshot_entries=len(records)))
        s.commit()
    return len(records)


# ---- the subject's own access ----
TOKEN_PREFIX = "cgs"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_S = 366 * 86400


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_access_token(reg: RegistryCore, subject_id: str, expires_in_s: int, by: str) -> dict[str, Any]:
    """A bearer token `cgs_<id>_<secret>` bound to `subject_id`, valid `expires_in_s` seconds; the
    secret is shown once (stored as SHA-256). A ledger entry (kind `subject`, event
    `access_token_issued`) records who gave the person access and until when."""
    if not 60 <= int(expires_in_s) <= MAX_TOKEN_S:
        raise InvalidRequest(f"expires_in must be between 60 and {MAX_TOKEN_S} seconds")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    now = utcnow()
    expires = now + timedelta(seconds=int(expires_in_s))
    with Session(reg.engine) as s:
        _subject(s, subject_id)
        s.add(RegistryAccessToken(id=token_id, subject_id=subject_id, secret_sha256=_token_hash(secret),
                                  created_by=by, created_at=now, expires_at=expires))
        s.flush()
        _entry(reg, s, "subject", subject_id, by, event="access_token_issued", token_id=token_id,
               expires_at=rfc3339(expires))
        s.commit()
    return {"token": f"{TOKEN_PREFIX}_{token_id}_{secret}", "token_id": token_id, "subject_id": subject_id,
            "expires_at": rfc3339(expires)}


def authenticate_access_token(reg: RegistryCore, presented: str) -> tuple[str, str]:
    """(subject id, token id) of a valid, unexpired token; raises AccessDenied otherwise. Compared in
    constant time; an erased subject's tokens are gone with it."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 12:
        raise AccessDenied("malformed subject access token")
    with Session(reg.engine) as s:
        row = s.get(RegistryAccessToken, parts[1])
    expected = row.secret_sha256 if row is not None else _token_hash("\0")
    if not hmac.compare_digest(expected, _token_hash(parts[2])) or row is None:
        raise AccessDenied("unknown subject access token")
    if to_utc(row.expires_at) <= utcnow():
        raise AccessDenied("this subject access token has expired")
    return row.subject_id, row.id


def request_erasure(reg: RegistryCore, subject_id: str, token_id: str) -> dict[str, Any]:
    """Queue the subject's own erasure request for a registrar (idempotent per subject)."""
    with Session(reg.engine) as s:
        _subject(s, subject_id)
        existing = s.exec(select(RegistryErasureRequest).where(RegistryErasureRequest.subject_id == subject_id)
                          ).first()
        if existing is None:
            existing = RegistryErasureRequest(id=secrets.token_hex(16), subject_id=subject_id, token_id=token_id,
                                              requested_at=utcnow())
            s.add(existing)
            s.flush()
            _entry(reg, s, "subject", subject_id, f"subject-token:{token_id}", event="erasure_requested",
                   request_id=existing.id)
            s.commit()
            s.refresh(existing)
        return {"request_id": existing.id, "subject_id": subject_id, "state": "queued",
                "requested_at": rfc3339(to_utc(existing.requested_at))}


def erasure_requests(reg: RegistryCore) -> list[dict[str, Any]]:
    with Session(reg.engine) as s:
        rows = s.exec(select(RegistryErasureRequest).order_by(col(RegistryErasureRequest.requested_at))).all()
        return [{"request_id": r.id, "subject_id": r.subject_id, "requested_at": rfc3339(to_utc(r.requested_at))}
                for r in rows]


def export_subject(reg: RegistryCore, subject_id: str) -> dict[str, Any]:
    """Everything the registry holds about the subject, as they may take it away (GDPR Art. 15/20):
    profile, enrolment metadata, grants, hash count, access tokens issued — never templates, images
    or hashes themselves."""
    with Session(reg.engine) as s:
        subject = _public(reg, s, [_subject(s, subject_id)])[0]
        enrolments = s.exec(select(RegistryEnrolment).where(RegistryEnrolment.subject_id == subject_id)
                            .order_by(col(RegistryEnrolment.created_at))).all()
        grants = s.exec(select(RegistryGrant).where(RegistryGrant.subject_id == subject_id)
                        .order_by(col(RegistryGrant.created_at))).all()
        tokens = s.exec(select(RegistryAccessToken).where(RegistryAccessToken.subject_id == subject_id)
                        .order_by(col(RegistryAccessToken.created_at))).all()
        return {
            "subject": subject.model_dump(mode="json"),
            "enrolments": [{"enrolment_id": e.id, "modality": "face", "notice_version": e.notice_version,
                            "image_count": e.image_count, "enrolled_by": e.enrolled_by,
                            "enrolled_at": rfc3339(to_utc(e.created_at))} for e in enrolments],
            "grants": [_grant_public(g).model_dump(mode="json") for g in grants],
            "access_tokens": [{"token_id": t.id, "created_by": t.created_by,
                               "created_at": rfc3339(to_utc(t.created_at)),
                               "expires_at": rfc3339(to_utc(t.expires_at))} for t in tokens],
        }
