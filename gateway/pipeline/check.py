"""Why: the pipeline is the only place that orders I/O. It runs every model the policy names over
every media part (off the event loop, concurrently, each call under a timeout), asks the consent
registry about faces, names and hashes, reads grants at decision time, freezes all of that into
`Facts`, and calls the pure `decide()`. Any failure becomes a `ModelFailure` fact: fail closed.
How much of the machine one check uses is decided when it starts (gateway/pipeline/parallel.py):
split (the default), its models run side by side, each with up to two threads; capped by the checks
in flight, its models run one after another on one thread each."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from classifiers._common import thread_budget
from classifiers.base import DetectedFace, FaceAnalyzer, NsfwWithFaces, TwoStageFaceAnalyzer
from gateway.decision import (
    FaceFact,
    FaceMatch,
    Facts,
    GrantFact,
    HashHit,
    InheritedFact,
    ModelFailure,
    NameFact,
    NsfwFact,
    Reason,
    SubjectFact,
    Verdict,
    VoiceFact,
    decide,
)
from gateway.media import DecodedImage
from gateway.metrics import Metrics
from gateway.pipeline.errors import ModelCallFailed
from gateway.pipeline.face_facts import face_fact, query_threshold
from gateway.pipeline.parallel import InFlight
from gateway.pipeline.ports import Clock, ConsentLookup
from gateway.pipeline.threads import in_thread
from gateway.pipeline.voice import Track, voice_facts
from gateway.policy.runtime import PolicyRuntime
from gateway.requestlog import observe

T = TypeVar("T")


@dataclass(frozen=True)
class CheckInput:
    stage: str
    use: str
    tenant: str
    end_user: str | None
    prompt: str | None
    images: list[DecodedImage] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)  # audio (issue #18): checked for voices
    inherited: tuple[InheritedFact, ...] = ()  # identities of the input decision (issue #15.2)


@dataclass
class CheckResult:
    facts: Facts
    verdict: Verdict
    elapsed_s: float
    embeddings: list[np.ndarray] = field(default_factory=list)


class CheckStage:
    """Runs the policy's models over decoded images, asks the consent registry, reads grants, and
    decides. Every model or registry call runs off the event loop under a timeout; a failure is a
    `ModelFailure` fact (fail closed), never an exception out of `run`."""

    def __init__(
        self,
        consent: ConsentLookup,
        metrics: Metrics,
        *,
        clock: Clock,
        model_timeout_s: float = 10.0,
        check_deadline_s: float = 30.0,
        in_flight: InFlight | None = None,
    ):
        self.consent = consent
        self.metrics = metrics
        self.clock = clock
        self.model_timeout_s = model_timeout_s
        self.check_deadline_s = check_deadline_s
        self.in_flight = in_flight or InFlight()

    async def _call(
        self, check: str, model: str, fn: Callable[[], T], timeout: float | None = None, threads: int | None = None
    ) -> T:
        """`fn()` in a worker thread under `timeout` (the model timeout by default) and, when given, a
        thread budget for the model (classifiers._common.thread_budget)."""
        start = time.perf_counter()
        limit = timeout or self.model_timeout_s
        call = fn if threads is None else functools.partial(_with_budget, threads, fn)
        try:
            result = await asyncio.wait_for(asyncio.to_thread(call), timeout=limit)
        except TimeoutError:
            self.metrics.model_failures.labels(model).inc()
            raise ModelCallFailed(ModelFailure(check, model, f"timed out after {limit:g}s")) from None
        except Exception as exc:  # noqa: BLE001 - every model error fails closed
            self.metrics.model_failures.labels(model).inc()
            raise ModelCallFailed(ModelFailure(check, model, f"{type(exc).__name__}: {exc}")) from None
        finally:
            self.metrics.model_seconds.labels(model).observe(time.perf_counter() - start)
        return result

    async def run(self, rt: PolicyRuntime, req: CheckInput) -> CheckResult:
        """The check under its deadline (`check_deadline_s`, over every model, registry call and
        `decide()` together): over it, the verdict is deny with reason `<use>.<stage>.check.deadline`,
        like a model timeout — a slow check never holds a request (or the event loop) open."""
        start = time.perf_counter()
        try:
            with self.in_flight.admit() as budget:
                return await asyncio.wait_for(self._run(rt, req, start, budget), timeout=self.check_deadline_s)
        except TimeoutError:
            self.metrics.model_failures.labels("check").inc()
            detail = f"the check took longer than its deadline of {self.check_deadline_s:g}s"
            facts = Facts(stage=req.stage, use=req.use, tenant=req.tenant, end_user=req.end_user, now=self.clock(),
                          media_count=len(req.images), prompt=req.prompt,
                          failures=(ModelFailure("check", "deadline", detail),))
            verdict = Verdict(decision="deny", obligations={},
                              reasons=(Reason(f"{req.use}.{req.stage}.check.deadline", "deny", detail),))
            return CheckResult(facts, verdict, time.perf_counter() - start)

    async def _run(self, rt: PolicyRuntime, req: CheckInput, start: float, budget: int = 1) -> CheckResult:
        policy = rt.policy
        failures: list[ModelFailure] = []
        up = policy.uses.get(req.use)
        stage_rules = getattr(up, req.stage, None) if up is not None and req.stage in ("input", "output") else None
        working = [img.working for img in req.images]

        async def guarded(coro: Awaitable[T]) -> T | None:
            try:
                return await coro
            except ModelCallFailed as failed:
                failures.append(failed.failure)
                return None

        nsfw_aliases: list[str] = []
        if stage_rules is not None and working:
            wanted = [c.model for c in stage_rules.nsfw] + [m.model for e in stage_rules.ensembles for m in e.members]
            nsfw_aliases = list(dict.fromkeys(wanted + list(policy.consent.face_proposals)))
        # NSFW at resolution: each image is judged whole (its working copy) and, when large, tile by
        # tile at full resolution, so an image made of small tiles is judged like each tile.
        # A model that also locates faces (NudeNet) and is named in `consent.face_proposals` is a second
        # face detector: its boxes, mapped to full-resolution pixels, are merged with the analyzer's.
        views: list[np.ndarray] = []
        owners: list[int] = []
        places: list[tuple[float, int, int]] = []  # view pixel → full pixel: (scale, dx, dy)
        for media_index, img in enumerate(req.images):
            views.append(img.working)
            owners.append(media_index)
            places.append((img.scale, 0, 0))
            for tile, dx, dy in nsfw_tiles(img.rgb):
                views.append(tile)
                owners.append(media_index)
                places.append((1.0, dx, dy))
        proposers = set(policy.consent.face_proposals)
        proposals: list[list[tuple[tuple[int, int, int, int], float]]] = [[] for _ in req.images]

        def classify(alias: str) -> list[dict[str, float]]:
            model = rt.nsfw[alias]
            if alias in proposers and isinstance(model, NsfwWithFaces):
                scored, boxes = model.classify_with_faces(views)
                for (scale, dx, dy), owner, found in zip(places, owners, boxes, strict=True):
                    proposals[owner].extend(((round(b[0] * scale) + dx, round(b[1] * scale) + dy,
                                              round(b[2] * scale) + dx, round(b[3] * scale) + dy), sc)
                                            for b, sc in found if sc >= FACE_PROPOSAL_SCORE)
            else:
                scored = model.classify(views)
            if len(scored) != len(views):
                raise ValueError(f"{len(scored)} results for {len(views)} images")
            return max_per_image(scored, owners, len(req.images))

        # Split (budget >= 2): the stages side by side, each model with the budget (the face analyzer
        # shares its levels and verification crops between two threads; the ONNX models use their
        # configured threads: one-thread sessions measured no faster here and ~10 % slower at 2048², where
        # five views keep them running to the end). Not split: one after another, one thread each.
        split = budget >= 2
        # Like the faces' budget below, an NSFW model's timeout grows with its work: the views (whole image
        # and tiles) it judges — 17 at 4096² — the per-model timeout per NSFW_BUDGET_VIEWS, at least once.
        view_scale = max(1.0, len(views) / NSFW_BUDGET_VIEWS)
        nsfw_tasks = [
            guarded(self._call(f"nsfw.{alias}", alias, functools.partial(classify, alias),
                               (rt.timeouts.get(alias) or self.model_timeout_s) * view_scale, budget))
            for alias in nsfw_aliases
        ]

        def analyze() -> list[list[DetectedFace]]:
            # Faces are looked for at full resolution: a 40 px face of a 4096² render is 10 px in the
            # 1024 px working copy. The analyzer chooses its own detection scale (classifiers/face_dlib.py).
            return [rt.face.analyze(img.rgb) for img in req.images]

        def hashes() -> list[list[str]]:
            return [rt.hasher.hashes(w) for w in working]

        # Full-coverage face detection costs in proportion to the pixels: the budget grows with them
        # (the per-model timeout per 1024² of image, at least once; the intake pixel limit caps it).
        pixels = sum(img.width * img.height for img in req.images)
        base = rt.policy.consent.face_model.timeout_s or self.model_timeout_s
        face_timeout = base * max(1.0, pixels / FACE_BUDGET_PIXELS)
        face_task = guarded(self._call("faces", rt.face.info.name, analyze, face_timeout, budget)) if working \
            else _none()
        hash_task = guarded(self._call("hash_list", rt.hasher.info.name, hashes, None, budget)) if working else _none()
        prompt_task = guarded(self.prompt_facts(rt, req.prompt)) if req.prompt and (
            stage_rules is None or stage_rules.prompt) else _none()
        voice_task = voice_facts(self._call, self.consent, rt, req.tracks) if req.tracks else _no_voices()

        t0 = time.perf_counter()
        faces_raw, nsfw_results, hashes_raw, prompt_facts, (voices, voice_failures) = await _stages(
            split, face_task, _stages(split, *nsfw_tasks), hash_task, prompt_task, voice_task)
        failures.extend(voice_failures)
        observe(self.metrics.stage_seconds, "models", time.perf_counter() - t0)

        nsfw_facts: list[NsfwFact] = []
        for alias, scores_list in zip(nsfw_aliases, nsfw_results, strict=True):
            if scores_list is None:
                continue
            model = rt.nsfw[alias]
            for i, scores in enumerate(scores_list):
                nsfw_facts.append(NsfwFact(i, alias, model.info.name, model.info.version,
                                           {k: float(v) for k, v in scores.items()}))

        t1 = time.perf_counter()
        if faces_raw is not None and any(proposals):
            faces_raw = await guarded(self._call("faces", rt.face.info.name, functools.partial(
                merge_proposals, rt.face, req.images, faces_raw, proposals), face_timeout))
        face_facts, embeddings = await guarded(self._match_faces(rt, req, faces_raw)) or ((), [])
        hash_hits: tuple[HashHit, ...] = ()
        if hashes_raw is not None:
            hash_hits = await guarded(self._hash_hits(rt, hashes_raw)) or ()
        names, concepts = prompt_facts if prompt_facts is not None else ((), {})
        subject_ids = sorted({m.subject_id for f in face_facts for m in f.matches} | {n.subject_id for n in names}
                             | {m.subject_id for v in voices for m in v.matches}
                             | {i.subject_id for i in req.inherited})
        grants: dict[str, tuple[GrantFact, ...]] = {}
        subjects: dict[str, SubjectFact] = {}

        def read_consent() -> tuple[dict[str, tuple[GrantFact, ...]], dict[str, SubjectFact]]:
            return self.consent.grants_for(subject_ids), self.consent.subject_facts(subject_ids)

        if subject_ids:
            got = await guarded(self._call("consent", "registry", read_consent))
            if got is not None:
                grants, subjects = got
        observe(self.metrics.stage_seconds, "consent", time.perf_counter() - t1)

        facts = Facts(
            stage=req.stage, use=req.use, tenant=req.tenant, end_user=req.end_user, now=self.clock(),
            media_count=len(req.images) + len(req.tracks), prompt=req.prompt, nsfw=tuple(nsfw_facts),
            faces=tuple(face_facts), names=tuple(names), concepts=dict(concepts), hash_hits=hash_hits,
            subjects=subjects, grants=grants, failures=tuple(failures), voices=voices, inherited=req.inherited,
            media_kind="audio" if req.tracks and not req.images else "image",
        )
        verdict = await in_thread(decide, policy, facts)  # prompt regexes run here: never on the event loop
        elapsed = time.perf_counter() - start
        observe(self.metrics.stage_seconds, "check", elapsed)
        return CheckResult(facts, verdict, elapsed, embeddings)

    async def _match_faces(
        self, rt: PolicyRuntime, req: CheckInput, faces_raw: list[list[DetectedFace]] | None
    ) -> tuple[tuple[FaceFact, ...], list[np.ndarray]]:
        if not faces_raw:
            return (), []
        # boxes are in full-resolution pixels (the analyzer saw `DecodedImage.rgb`)
        located = [(media_index, face) for media_index, faces in enumerate(faces_raw) for face in faces]
        if not located:
            return (), []
        embeddings = [f.embedding for _, f in located if f.embedding is not None]
        matches: list[list[FaceMatch]] = []
        consent = rt.policy.consent
        if embeddings:
            matrix = np.stack(embeddings).astype(np.float32)
            near = query_threshold(consent)  # the registry is asked down to just under the threshold
            found = await self._call("consent", "registry",
                                     lambda: self.consent.match_faces(rt.face.info.name, matrix, near))
            matches = [[FaceMatch(m.subject_id, float(m.similarity)) for m in hits] for hits in found]
        matched = iter(matches)
        facts = [face_fact(media_index, face, None if face.embedding is None else next(matched), consent)
                 for media_index, face in located]
        return tuple(facts), embeddings

    async def _hash_hits(self, rt: PolicyRuntime, hashes_raw: list[list[str]]) -> tuple[HashHit, ...]:
        max_distance = rt.policy.hash_list.max_distance
        hits: list[HashHit] = []
        for media_index, hashes in enumerate(hashes_raw):
            found = await self._call("hash_list", "registry",
                                     functools.partial(self.consent.hash_hits, hashes, max_distance))
            hits.extend(HashHit(media_index, subject_id, distance) for subject_id, distance in found)
        return tuple(hits)

    async def prompt_facts(
        self, rt: PolicyRuntime, prompt: str | None
    ) -> tuple[tuple[NameFact, ...], dict[str, float]]:
        if not prompt:
            return (), {}
        names: tuple[NameFact, ...] = ()
        if rt.policy.prompt.names:
            found = await self._call("prompt.names", "registry", lambda: self.consent.match_names(prompt))
            names = tuple(NameFact(subject_id, text) for subject_id, text in found)
        concepts: dict[str, float] = {}
        if rt.text is not None and rt.concept_vectors:
            text_model = rt.text
            vec = await self._call("prompt.concepts", text_model.info.name, lambda: text_model.embed([prompt])[0])
            for concept_id, examples in rt.concept_vectors.items():
                concepts[concept_id] = float(np.max(examples @ vec))
        return names, concepts


FACE_BUDGET_PIXELS = 1024 * 1024  # faces get the per-model timeout per this many pixels (at least once)
NSFW_BUDGET_VIEWS = 4  # an NSFW model gets the per-model timeout per this many views (at least once)
FACE_PROPOSAL_SCORE = 0.5  # NudeNet FACE_* boxes this confident count as faces (benign pictures: none >= 0.2)
NSFW_TILE_PX = 1024  # images longer than 1.5× this are also judged in tiles of about this size


def nsfw_tiles(rgb: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """Full-resolution tiles (a grid of about NSFW_TILE_PX squares, no gaps) of an image longer than
    1.5 × NSFW_TILE_PX, each with its top-left (x, y); none for smaller images, which the working copy
    already shows at about that size. The models resize each tile to their own input (NudeNet 320,
    open_nsfw 224)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= NSFW_TILE_PX * 1.5:
        return []
    nx, ny = math.ceil(w / NSFW_TILE_PX), math.ceil(h / NSFW_TILE_PX)
    xs = [round(i * w / nx) for i in range(nx + 1)]
    ys = [round(j * h / ny) for j in range(ny + 1)]
    return [(rgb[ys[j]:ys[j + 1], xs[i]:xs[i + 1]], xs[i], ys[j]) for j in range(ny) for i in range(nx)]


def _same_face(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Two boxes of one face from different detectors (their box conventions differ: NudeNet's takes in
    hair and chin): they overlap by IoU >= 0.3, or one's centre lies inside the other."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union > 0 and inter / union >= 0.3:
        return True
    for p, q in ((a, b), (b, a)):
        cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
        if q[0] <= cx <= q[2] and q[1] <= cy <= q[3]:
            return True
    return False


def merge_proposals(
    analyzer: FaceAnalyzer, images: list[DecodedImage], found: list[list[DetectedFace]],
    proposals: list[list[tuple[tuple[int, int, int, int], float]]],
) -> list[list[DetectedFace]]:
    """The analyzer's faces plus each proposed box (another model's face, full-resolution pixels) that
    none of them covers — merged across views (a face seen whole and in a tile is one face). Those extra
    faces are turned, in profile or occluded (the analyzer did not find them): they are embedded when the
    analyzer can (a match is still a match) and carry `unidentified` either way, so an unmatched one is
    never "nobody enrolled"."""
    out: list[list[DetectedFace]] = []
    for img, faces, boxes in zip(images, found, proposals, strict=True):
        extra: list[DetectedFace] = []
        for box, score in sorted(boxes, key=lambda item: -item[1]):
            x0, y0 = max(0, box[0]), max(0, box[1])
            x1, y1 = min(img.width, box[2]), min(img.height, box[3])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            clipped = (x0, y0, x1, y1)
            if any(_same_face(clipped, f.bbox) for f in [*faces, *extra]):
                continue
            extra.append(DetectedFace(bbox=clipped, det_score=float(score), unidentified=(
                "seen by the NSFW model's face detector only (turned, in profile or occluded): the face "
                "analyzer cannot identify it with confidence")))
        if extra and isinstance(analyzer, TwoStageFaceAnalyzer):
            extra = [replace(e, embedding=done.embedding) for e, done in
                     zip(extra, analyzer.embed(img.rgb, extra), strict=True)]
        out.append([*faces, *extra])
    return out


def max_per_image(scored: list[dict[str, float]], owners: list[int], count: int) -> list[dict[str, float]]:
    """Per image, per label: the highest score over its views (whole image and tiles)."""
    out: list[dict[str, float]] = [{} for _ in range(count)]
    for scores, owner in zip(scored, owners, strict=True):
        merged = out[owner]
        for label, value in scores.items():
            merged[label] = max(merged.get(label, 0.0), float(value))
    return out


async def _stages(split: bool, *stages: Awaitable[Any]) -> list[Any]:
    """The stages' results in order: run side by side (`split`) or one after another."""
    if split:
        return list(await asyncio.gather(*stages))
    return [await stage for stage in stages]


def _with_budget(threads: int, fn: Callable[[], T]) -> T:
    with thread_budget(threads):
        return fn()


async def _none() -> None:
    return None


async def _no_voices() -> tuple[tuple[VoiceFact, ...], list[ModelFailure]]:
    return (), []
