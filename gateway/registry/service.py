"""Why: one object that the API, the CLI and the pipeline share to run the consent registry.

`Registry` owns the admin operations (subjects, enrolment, grants, hash lists, erasure, re-embedding) and
the decision-time lookups. Lookups are answered from in-memory snapshots (face indexes, names, hashes)
that are refreshed when the change counters in `registry_state` move — polled at most every
`poll_interval_s`, so another replica sees a change within about a second. Grants and subject flags are
always read from the database at decision time, and every proposed subject is checked against the live
subject table, so a revocation or an erasure holds on the very next request on every replica.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from classifiers.base import FaceAnalyzer, PerceptualHasher
from gateway.registry import admin, retention, voices
from gateway.registry.core import RegistryCore
from gateway.registry.crypto import SubjectCrypto
from gateway.registry.enrolment import QualityGate
from gateway.registry.errors import CryptoError, RegistryUnavailable
from gateway.registry.facts import FaceMatch, GrantFact, SubjectFact
from gateway.registry.grant_guard import GrantGuard
from gateway.registry.hashes import HashIndex
from gateway.registry.index import FaceIndex
from gateway.registry.models import (
    EnrolmentResult,
    GrantPublic,
    HashAddResult,
    RegistryGrant,
    RegistryHash,
    RegistrySubject,
    RegistryVoiceTemplate,
    SubjectPublic,
    VoiceEnrolmentResult,
)
from gateway.registry.names import NameIndex
from gateway.registry.records import clean_text, rfc3339, to_utc
from gateway.registry.retention_plan import erase_fields
from gateway.registry.store import (
    DbTemplateSource,
    grant_fact,
    grant_state,
    read_counters,
    unavailable_on_db_error,
)


@dataclass
class RegistryFaults:
    """Fault hook for tests: `unavailable = True` makes every call raise RegistryUnavailable."""

    unavailable: bool = False


class Registry(RegistryCore):
    # Set by the composition root (and the CLI): refuses grants for unknown uses and tenants.
    grant_guard: GrantGuard | None = None

    def __init__(
        self,
        engine: Engine,
        crypto: SubjectCrypto,
        face_analyzers: Mapping[str, FaceAnalyzer],
        hasher: PerceptualHasher | None = None,
        *,
        keep_enrolment_images: bool = True,
        min_face_px: int = 64,
        min_det_score: float = 0.8,
        hnsw_min_size: int = 20000,
        poll_interval_s: float = 1.0,
        max_images: int = 10,
        voice_gate: voices.VoiceGate | None = None,
    ) -> None:
        super().__init__(engine, crypto, face_analyzers, hasher, keep_enrolment_images=keep_enrolment_images,
                         gate=QualityGate(min_face_px=min_face_px, min_det_score=min_det_score),
                         max_images=max_images)
        self.hnsw_min_size = hnsw_min_size
        self.poll_interval_s = poll_interval_s
        self.faults = RegistryFaults()
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._polled_at = float("-inf")
        self._indexes: dict[str, FaceIndex] = {}
        self._voice_indexes: dict[str, FaceIndex] = {}
        self.voice_gate = voice_gate or voices.VoiceGate()
        self._names: tuple[int, NameIndex] | None = None
        self._hashes: tuple[int, HashIndex] | None = None

    # ---- plumbing ----
    def _guard(self) -> None:
        if self.faults.unavailable:
            raise RegistryUnavailable("consent registry unavailable (fault injected)")

    def _changed(self) -> None:
        """After our own writes: make the next lookup re-read the counters."""
        self._polled_at = float("-inf")

    def _counter(self, name: str) -> int:
        with self._lock:
            now = time.monotonic()
            if now - self._polled_at >= self.poll_interval_s:
                self._counters = read_counters(self.engine)
                self._polled_at = now
            return self._counters[name]

    def _live(self, subject_ids: set[str]) -> set[str]:
        if not subject_ids:
            return set()
        with Session(self.engine) as s:
            rows = s.exec(select(RegistrySubject.id).where(col(RegistrySubject.id).in_(subject_ids))).all()
        return set(rows)

    # ---- subjects ----
    def create_subject(
        self, display_name: str, aliases: Sequence[str] = (), protected: bool = False, created_by: str = ""
    ) -> SubjectPublic:
        self._guard()
        with unavailable_on_db_error("create subject"):
            out = admin.create_subject(
                self, display_name, aliases, protected, created_by, secrets.token_hex(16)
            )
        self._changed()
        return out

    def list_subjects(self, offset: int = 0, limit: int = 100) -> list[SubjectPublic]:
        self._guard()
        with unavailable_on_db_error("list subjects"):
            return admin.list_subjects(self, offset, limit)

    def get_subject(self, subject_id: str) -> SubjectPublic:
        self._guard()
        with unavailable_on_db_error("get subject"):
            return admin.get_subject(self, subject_id)

    # ---- enrolment ----
    def enroll(
        self, subject_id: str, images: Sequence[np.ndarray], notice_version: str, enrolled_by: str
    ) -> EnrolmentResult:
        self._guard()
        with unavailable_on_db_error("enrol"):
            out = admin.enroll(self, subject_id, images, notice_version, enrolled_by)
        self._changed()
        return out

    def reembed(self, model_name: str) -> dict[str, Any]:
        """Recompute `model_name` templates from the kept enrolment images (after a model change)."""
        self._guard()
        with unavailable_on_db_error("re-embed"):
            out = admin.reembed(self, model_name)
        self._changed()
        return out

    def enroll_voice(
        self, subject_id: str, clips: Sequence[np.ndarray], notice_version: str, enrolled_by: str
    ) -> VoiceEnrolmentResult:
        """Voice templates from 1..10 clips of one person's speech (mono float32 at the models' rate)."""
        self._guard()
        notice = clean_text(notice_version, "notice_version")
        with unavailable_on_db_error("enrol voice"):
            out = voices.enroll_voice(self, subject_id, clips, notice, enrolled_by, self.voice_gate)
        self._changed()
        return out

    def reembed_voices(self, model_name: str) -> dict[str, Any]:
        """Recompute `model_name` voice templates from the kept enrolment speech (after a model change)."""
        self._guard()
        if model_name not in self.voice_embedders:
            raise voices.UnknownVoiceModel(model_name)
        with unavailable_on_db_error("re-embed voices"):
            out = voices.reembed_voices(self, model_name, self.voice_gate)
        self._changed()
        return out

    # ---- grants ----
    def grant(
        self,
        subject_id: str,
        grantee_tenant: str,
        grantee_end_user: str | None = None,
        uses: Sequence[str] = (),
        expires_at: datetime | None = None,
        valid_from: datetime | None = None,
        created_by: str = "",
        *,
        allow_new_tenant: bool = False,
    ) -> GrantPublic:
        self._guard()
        if self.grant_guard is not None:  # unknown uses and tenants admit nobody: refuse them (#22.4)
            self.grant_guard.check(grantee_tenant, uses, allow_new_tenant=allow_new_tenant)
        with unavailable_on_db_error("grant"):
            return admin.grant(
                self, subject_id, grantee_tenant, grantee_end_user, uses, expires_at, valid_from, created_by
            )

    def revoke(self, grant_id: str, by: str) -> GrantPublic:
        self._guard()
        with unavailable_on_db_error("revoke"):
            return admin.revoke(self, grant_id, by)

    def get_grant(self, grant_id: str) -> GrantPublic:
        self._guard()
        with unavailable_on_db_error("get grant"):
            return admin.get_grant(self, grant_id)

    def list_grants(self, subject_id: str) -> list[GrantPublic]:
        self._guard()
        with unavailable_on_db_error("list grants"):
            return admin.list_grants(self, subject_id)

    # ---- hash lists ----
    def add_hashes(
        self,
        subject_id: str,
        hex_list: Sequence[str] = (),
        images: Sequence[np.ndarray] = (),
        created_by: str = "",
    ) -> HashAddResult:
        """Add PDQ hashes given as hex, and/or hash `images` (which are then discarded)."""
        self._guard()
        with unavailable_on_db_error("add hashes"):
            out = admin.add_hashes(self, subject_id, hex_list, images, created_by)
        self._changed()
        return out

    # ---- the subject's own access ----
    def issue_access_token(self, subject_id: str, expires_in_s: int, by: str) -> dict[str, Any]:
        self._guard()
        with unavailable_on_db_error("issue access token"):
            return admin.issue_access_token(self, subject_id, expires_in_s, by)

    def authenticate_access_token(self, token: str) -> tuple[str, str]:
        """(subject id, token id); raises AccessDenied."""
        self._guard()
        with unavailable_on_db_error("check access token"):
            return admin.authenticate_access_token(self, token)

    def request_erasure(self, subject_id: str, token_id: str) -> dict[str, Any]:
        self._guard()
        with unavailable_on_db_error("request erasure"):
            return admin.request_erasure(self, subject_id, token_id)

    def erasure_requests(self) -> list[dict[str, Any]]:
        self._guard()
        with unavailable_on_db_error("list erasure requests"):
            return admin.erasure_requests(self)

    def export_subject(self, subject_id: str) -> dict[str, Any]:
        self._guard()
        with unavailable_on_db_error("export subject"):
            return admin.export_subject(self, subject_id)

    # ---- retention ----
    def retention_run(self, rules: Mapping[str, retention.Rule], now: datetime,
                      activity: retention.Activity | None = None, *, dry_run: bool = False,
                      actor: str = "retention") -> dict[str, Any]:
        """Apply the retention rules at `now` (see retention.py): every enrolled subject's verdict,
        and unless `dry_run` the deletions (each with its `retention` receipt) and `expiry` entries."""
        self._guard()
        with unavailable_on_db_error("retention"):
            plans = retention.plan(self, rules, now, activity)
            report: dict[str, Any] = {"evaluated_at": rfc3339(to_utc(now)), "dry_run": dry_run,
                                      "subjects": [p.as_dict() for p in plans], "receipts": [], "expiries": 0}
            if dry_run:
                return report
            report["expiries"] = retention.record_expiries(self, now, activity, actor)

            def erase(p: retention.SubjectPlan) -> dict[str, Any]:
                return admin.erase(self, p.subject_id, actor, kind="retention", extra=erase_fields(p, now))

            report["receipts"] = retention.apply(self, plans, now, erase, actor)
        self._changed()
        return report

    def start_retention_sweeper(self, rules: Callable[[], retention.RetentionConfig | None],
                                activity: retention.Activity | None,
                                clock: Callable[[], datetime]) -> retention.RetentionSweeper:
        """Run retention on a timer in this process while it holds the `retention` lease; `rules()`
        reads the active policy's `retention:` section each time (None: sweeping is off)."""

        def run(now: datetime) -> None:
            config = rules()
            if config is not None:
                self.retention_run({"face": config.face, "voice": config.voice}, now, activity)

        def interval() -> float | None:
            config = rules()
            return None if config is None or not config.enabled else float(config.sweep_interval_s)

        sweeper = retention.RetentionSweeper(run, self, interval, clock)
        self._sweeper = sweeper
        sweeper.start()
        return sweeper

    # ---- the consent ledger ----
    def snapshot_ledger(self) -> int:
        """The one-time `snapshot` entries of a registry that predates the ledger (see admin.snapshot)."""
        with unavailable_on_db_error("ledger snapshot"):
            try:
                return admin.snapshot(self)
            except IntegrityError:  # another replica wrote the snapshot first
                return 0

    # ---- erasure ----
    def erase(self, subject_id: str, by: str) -> dict[str, Any]:
        """Crypto-shred the subject's key, delete its rows, and append the erasure receipt to the
        ledger in the same transaction; returns the receipt with its audit index."""
        self._guard()
        with unavailable_on_db_error("erase"):
            out = admin.erase(self, subject_id, by)
        self._changed()
        return out

    # ---- decision-time lookups ----
    def _face_index(self, model_name: str) -> FaceIndex:
        analyzer = self.analyzer(model_name)
        with self._lock:
            index = self._indexes.get(model_name)
            if index is not None and getattr(index.source, "model_version", None) != analyzer.info.version:
                index.wait_idle()  # the model changed under this name: start over with its templates
                index = None
            if index is None:
                source = DbTemplateSource(
                    self.engine,
                    self.crypto,
                    model_name,
                    analyzer.info.version,
                    analyzer.embedding_dim,
                    lambda: self._counter("faces"),
                )
                index = FaceIndex(
                    analyzer.embedding_dim,
                    hnsw_min_size=self.hnsw_min_size,
                    source=source,
                    poll_interval_s=0.0,
                )
                self._indexes[model_name] = index
        return index

    def _voice_index(self, model_name: str) -> FaceIndex:
        embedder = self.voice_embedders.get(model_name)
        if embedder is None:
            raise voices.UnknownVoiceModel(model_name)
        with self._lock:
            index = self._voice_indexes.get(model_name)
            if index is not None and getattr(index.source, "model_version", None) != embedder.info.version:
                index.wait_idle()
                index = None
            if index is None:
                source = DbTemplateSource(
                    self.engine, self.crypto, model_name, embedder.info.version, embedder.dim,
                    lambda: self._counter("faces"), table=RegistryVoiceTemplate,
                    purpose=voices.voice_purpose(model_name, embedder.info.version),
                    removal_key=voices.removal_key(model_name),
                )
                index = FaceIndex(embedder.dim, hnsw_min_size=self.hnsw_min_size, source=source, poll_interval_s=0.0)
                self._voice_indexes[model_name] = index
        return index

    def match_voices(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        """Per voice window: the subjects whose voice templates reach `threshold` (cosine), best first."""
        self._guard()
        index = self._voice_index(model_name)
        with unavailable_on_db_error("match voices"):
            index.refresh_if_changed()
            found = index.search(np.asarray(embeddings, np.float32), threshold)
            live = self._live({sid for hits in found for sid, _ in hits})
        return [[FaceMatch(sid, sim) for sid, sim in hits if sid in live] for hits in found]

    def warm_up(self) -> None:
        """Build every snapshot now (at startup) instead of on the first request."""
        self._guard()
        with unavailable_on_db_error("warm up"):
            for name in self.face_analyzers:
                self._face_index(name).refresh_if_changed(force=True)
            self._name_index()
            self._hash_index()

    def match_faces(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        """Per face: the subjects whose templates reach `threshold` (cosine), best first."""
        self._guard()
        index = self._face_index(model_name)
        with unavailable_on_db_error("match faces"):
            index.refresh_if_changed()
            found = index.search(np.asarray(embeddings, np.float32), threshold)
            live = self._live({sid for hits in found for sid, _ in hits})
        return [[FaceMatch(sid, sim) for sid, sim in hits if sid in live] for hits in found]

    def _name_index(self) -> NameIndex:
        version = self._counter("names")
        snap = self._names
        if snap is not None and snap[0] == version:
            return snap[1]
        entries: list[tuple[str, str]] = []
        with Session(self.engine) as s:
            for row in s.exec(select(RegistrySubject)).all():
                try:
                    profile = self.profile(row)
                except CryptoError as exc:  # its row exists, so it is not erased: fail closed (#15.5)
                    raise RegistryUnavailable(f"cannot decrypt the name of an enrolled subject ({type(exc).__name__}):"
                                              " wrong or emptied key store, or wrong key-encryption key?") from exc
                entries += [(row.id, n) for n in [profile["display_name"], *profile.get("aliases", [])]]
        index = NameIndex(entries)
        self._names = (version, index)
        return index

    def match_names(self, prompt: str) -> list[tuple[str, str]]:
        """(subject_id, text as written) for each enrolled name or alias the prompt contains."""
        self._guard()
        with unavailable_on_db_error("match names"):
            hits = self._name_index().match(prompt)
            live = self._live({sid for sid, _ in hits})
        return [(sid, text) for sid, text in hits if sid in live]

    def _hash_index(self) -> HashIndex:
        version = self._counter("hashes")
        snap = self._hashes
        if snap is not None and snap[0] == version:
            return snap[1]
        with Session(self.engine) as s:
            rows = s.exec(select(RegistryHash.subject_id, RegistryHash.hash_hex)).all()
        index = HashIndex((sid, h) for sid, h in rows)
        self._hashes = (version, index)
        return index

    def hash_hits(self, hashes: Sequence[str], max_distance: int = 31) -> list[tuple[str, int]]:
        """(subject_id, Hamming distance) of hash-list entries within `max_distance` of any given hash."""
        self._guard()
        with unavailable_on_db_error("hash lookup"):
            hits = self._hash_index().search(list(hashes), max_distance)
            live = self._live({sid for sid, _ in hits})
        return [(sid, d) for sid, d in hits if sid in live]

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]:
        """Every grant (revoked and expired included) of these subjects, read now from the database."""
        self._guard()
        ids = set(subject_ids)
        if not ids:
            return {}
        with unavailable_on_db_error("read grants"), Session(self.engine) as s:
            rows = s.exec(
                select(RegistryGrant)
                .where(col(RegistryGrant.subject_id).in_(ids))
                .order_by(col(RegistryGrant.created_at))
            ).all()
        out: dict[str, list[GrantFact]] = {}
        for g in rows:
            out.setdefault(g.subject_id, []).append(grant_fact(g))
        return {k: tuple(v) for k, v in out.items()}

    def grant_states(self, grant_ids: Sequence[str], now: datetime) -> list[tuple[str, str]]:
        """(grant id, erased | revoked | expired | granted) for each id, read now (provenance reports)."""
        if not grant_ids:
            return []
        with unavailable_on_db_error("read grants"), Session(self.engine) as s:
            rows = {r.id: grant_fact(r) for r in s.exec(
                select(RegistryGrant).where(col(RegistryGrant.id).in_(list(grant_ids))))}
        return [(gid, grant_state(rows.get(gid), now)) for gid in grant_ids]

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]:
        """{id: SubjectFact(id, protected)} for the subjects that exist now."""
        self._guard()
        ids = set(subject_ids)
        if not ids:
            return {}
        with unavailable_on_db_error("read subjects"), Session(self.engine) as s:
            rows = s.exec(
                select(RegistrySubject.id, RegistrySubject.protected).where(col(RegistrySubject.id).in_(ids))
            ).all()
        return {sid: SubjectFact(id=sid, protected=bool(p)) for sid, p in rows}

    def readiness(self) -> str | None:
        """None when the registry can answer, else why not — `/readyz` is 503 then (issue #15.5).
        Checks that the key store holds a data key for every enrolled subject (by count) and that
        the newest subject's key unwraps under this KEK: a wrong `CONSENTGATE_KEYSTORE_URL`, a restored
        key-store backup or a wrong KEK would otherwise turn enrolled people into `no_match`."""
        try:
            self._guard()
            with unavailable_on_db_error("readiness"), Session(self.engine) as s:
                subjects = int(s.exec(select(func.count()).select_from(RegistrySubject)).one())
                newest = s.exec(select(RegistrySubject.id).order_by(col(RegistrySubject.created_at).desc())
                                .limit(1)).first()
            if subjects == 0:
                return None
            keys = len(self.crypto.keystore.subject_ids())
            if keys < subjects:
                return f"the key store holds {keys} data key(s) for {subjects} enrolled subject(s)"
            if newest is not None:
                self.crypto.decrypt_many(newest, [], "readiness")  # unwraps the subject's key, decrypts nothing
        except RegistryUnavailable as exc:
            return str(exc)
        except CryptoError as exc:
            return f"cannot unwrap a subject key ({type(exc).__name__}): wrong key store or key-encryption key?"
        except Exception as exc:  # noqa: BLE001 - a key store that cannot be read is not ready
            return f"key store unreadable: {type(exc).__name__}"
        return None

    def counts(self) -> dict[str, int]:
        """Registry sizes (for /readyz and metrics; no personal data)."""
        with unavailable_on_db_error("counts"), Session(self.engine) as s:
            subjects = s.exec(select(func.count()).select_from(RegistrySubject)).one()
        return {"subjects": int(subjects), **{f"index_{k}": v.size for k, v in self._indexes.items()}}

    def close(self) -> None:
        """Stop background work and drop the decrypted templates from memory."""
        sweeper = getattr(self, "_sweeper", None)
        if sweeper is not None:
            sweeper.stop()
        with self._lock:
            indexes = list(self._indexes.values()) + list(self._voice_indexes.values())
            self._indexes.clear()
            self._voice_indexes.clear()
            self._names = None
            self._hashes = None
        for index in indexes:
            index.wait_idle()
