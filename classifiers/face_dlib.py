"""Why: consent checks need to find every face and tell who it is; dlib's HOG (or CNN mmod)
detector, 5-point landmarks and ResNet-128 embedder ship with their weights on PyPI
(`dlib-bin` + `face-recognition-models`) and run on CPU without a GPU.

Coverage (the default, `min_face_px` > 0, HOG): every face at least `min_face_px` high is found in
an image of any size. HOG's 80 px window finds faces of about 64 px reliably (measured on pasted
packaged faces, in-plane rotation up to ±30°), so detection scans a greyscale pyramid whose top level
is the image scaled by 64 / `min_face_px`, at a low threshold; each candidate box is then verified by
HOG on its own crop rescaled so the face is 72, 80, 96 and 112 px: the mean score of true faces
(pasted, 40–160 px, ±30°, JPEG; 362 that needed verifying) was >= 0.113, that of non-faces on the
packaged images (textures, the astronaut's hands; 32) <= 0.045, so 0.08 splits them (docs/faces.md).
The verify crops are tiny: cheap proposals first, the ResNet embedding only on verified faces.

The pyramid is ours, not dlib's: dlib's detector steps down by 5/6 per level, which at 1.6× the image
costs ~8.4 image-areas of scanning; the proposal stage only has to put a candidate above the low
threshold (the verification judges it), and a 0.7 step does that with room to spare (lowest candidate
score of a pasted face -0.16 against the -0.4 threshold; docs/faces.md) for ~5.0 image-areas. Each
level is scanned by a copy of dlib's frontal detector limited to one pyramid level (its serialized
`max_pyramid_levels` set to 1: same filters, same scores); the 1.6× top level, half of the work, scans
the image itself with 5 px HOG cells (the same 10 × 10-cell filters, serialized cell size 5) instead of
the image upscaled 1.6× with 8 px cells — HOG features are ~60 % of a scan and follow the pixels. The
levels (their images made once for both; each thread takes the most costly level left), and then the
verification crops, are shared between two threads (dlib releases the GIL) — no bands, no seams, the same
boxes and scores either way — when the caller's `thread_budget` (classifiers/_common.py) allows two;
with no budget set, only first passes over 2 MP of levels are split (what a lone call on an idle machine
wants). `min_face_px: 0` is the old single-scale path: detection on a copy scaled down to
`detect_max_side` (faces under ~1/8 of the image width are missed). Landmarks and the embedding always
use the full-resolution image. dlib objects are not documented as thread-safe, so every call holds the
adapter's lock (the second thread has its own detector).

`det_score` = logistic(2 × detector margin), in [0, 1]; `min_score` filters on the raw margin
(HOG: real frontal faces ~1.2–1.5, weak false positives ~0.1). Embeddings are dlib's
128-d descriptors, L2-normalised (dlib's usual Euclidean threshold 0.6 on raw descriptors).

The embedding: dlib finds the 5 landmarks and cuts the aligned 150×150 chip (`get_face_chip`, ~1 ms);
the ResNet on that chip is run by an engine from `classifiers.dlib_resnet.EMBED_ENGINES` (the same
weights file, parsed; ONNX Runtime by default, several times faster than dlib-bin without BLAS), all
faces of an image in one batch, outside the adapter's lock. The engine is checked against dlib's own
`compute_face_descriptor` on a fixed chip when the adapter is built (cosine >= 0.9999, else it is not
used), so the descriptors — and the model's name and `model_version` — are dlib's, and enrolled
templates stay valid. `embed_engine: dlib` (or a missing onnxruntime under `auto`) is dlib's own path.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, budget_set, check_rgb, weights_digest
from classifiers.base import DetectedFace, ModelError, ModelInfo
from classifiers.dlib_resnet import CHIP_PADDING, CHIP_SIZE, EMBED_ENGINES, EmbedEngine, read_dlib_resnet

_log = logging.getLogger(__name__)

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR = "shape_predictor_5_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"


def dlib_models_dir() -> Path:
    """face_recognition_models/models, located without importing the package (it needs
    pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package 'face-recognition-models' is not installed (dlib face weights)")
    folder = Path(next(iter(spec.submodule_search_locations)), "models")
    for filename in (RESNET, PREDICTOR, MMOD):
        if not (folder / filename).is_file():
            raise ModelError(f"dlib weights file {folder / filename} is missing")
    return folder


HOG_FACE_PX = 64  # the face height HOG (80 px window) finds reliably at its own scale (measured)
HOG_WINDOW = 80  # px: dlib's frontal detector window; a pyramid level smaller than this has no position
HOG_CELL = 8  # px: its HOG cell (the window is 10 × 10 cells)
PYRAMID_STEP = 0.7  # scale ratio between first-pass levels (dlib's own pyramid: 5/6; docs/faces.md)
VERIFY_FACE_PX = (72, 80, 96, 112)  # a candidate's crop is rescaled so its face is this high, in turn
CANDIDATE_SCORE = -0.4  # first-pass threshold (recall): every pasted test face scored above it
ACCEPT_SCORE = 0.8  # a first-pass score this high needs no second pass
VERIFY_SCORE = 0.08  # mean second-pass score a candidate needs (true faces >= 0.113, non-faces <= 0.045)
VERIFY_MISSING = -1.0  # the score of a crop scale where nothing overlapping the candidate is found
VERIFY_PAD = 0.6  # context around the candidate box in the verify crop, in box widths
ENGINE_CHOICES = ("auto", "dlib", *EMBED_ENGINES)
EMBED_BATCH = 32  # face chips per engine call
ENGINE_MIN_COSINE = 0.9999  # an engine must give dlib's descriptor on the self-check chip to this cosine
PARALLEL_MIN_PIXELS = 2_000_000  # with no thread budget set, first passes over more level pixels use two threads

# dlib's serialization of `get_frontal_face_detector()` up to and including `max_pyramid_levels`:
# object_detector version 2, scan_fhog_pyramid version 1, feature extractor, no cached features,
# cell size 8, padding 0, window 80 × 80, max_pyramid_levels 1000 (dlib's variable-length integers).
_FRONTAL_HEAD = bytes.fromhex("0102" "0101" "0100" "0100" "0108" "0100" "0150" "0150")
_ALL_LEVELS = bytes.fromhex("02e803")
_ONE_LEVEL = bytes.fromhex("0101")


def single_level_detector(dlib: Any, cell: int = HOG_CELL) -> Any:
    """dlib's frontal HOG face detector (same filters) scanning only the image it is given, not a
    pyramid below it: its serialized `max_pyramid_levels` set from 1000 to 1. With `cell` < 8 its HOG
    cells (and so its window, 10 cells) are `cell` px instead of 8: scanning an image with 5 px cells
    sees what 8 px cells see in the image upscaled by 8/5, without computing HOG features on the
    upscaled pixels (features are ~60 % of the scan). Same filters, similar scores (docs/faces.md)."""
    if not 2 <= cell <= HOG_CELL:
        raise ValueError(f"HOG cell size {cell} is outside 2..{HOG_CELL}")
    with tempfile.TemporaryDirectory(prefix="cg-dlib-") as tmp:
        path = Path(tmp, "frontal.svm")
        dlib.get_frontal_face_detector().save(str(path))
        raw = path.read_bytes()
        head = len(_FRONTAL_HEAD)
        if raw[:head] != _FRONTAL_HEAD or raw[head:head + len(_ALL_LEVELS)] != _ALL_LEVELS:
            raise ModelError("dlib's frontal face detector has an unexpected serialized layout (dlib version?); "
                             "the full-coverage face path needs its pyramid setting (see classifiers/face_dlib.py)")
        window = HOG_WINDOW // HOG_CELL * cell
        patched = _FRONTAL_HEAD[:8] + bytes([1, cell, 1, 0, 1, window, 1, window])  # cell, padding, window
        path.write_bytes(patched + _ONE_LEVEL + raw[head + len(_ALL_LEVELS):])
        return dlib.fhog_object_detector(str(path))


def pyramid_levels(height: int, width: int, top: float, step: float = PYRAMID_STEP) -> list[tuple[float, int]]:
    """The first pass's levels as (image scale, HOG cell px): effective scales `top`, ·step, ... (a
    level's effective scale is image scale × 8 / cell) while the level still holds a window. The top
    level, when above 1× by a whole ratio of cells (1.6× = 8/5), scans the image itself with the finer
    cells instead of upscaling it; the other levels use 8 px cells (finer cells there moved candidate
    boxes enough to lift a non-face over the verification threshold: docs/faces.md)."""
    levels: list[tuple[float, int]] = []
    k = top
    while True:
        cell = HOG_CELL
        fine = round(HOG_CELL / k)
        if not levels and k > 1 and fine >= 2 and abs(HOG_CELL / fine - k) < 0.01 * k:
            k, cell = 1.0, fine
        if min(height, width) * k < HOG_WINDOW // HOG_CELL * cell:
            return levels
        levels.append((k, cell))
        k = k * HOG_CELL / cell * step


class DlibFaceAnalyzer:
    """Options: `detector` ("hog" | "cnn", default hog), `min_face_px` (default 40: the smallest face
    found at any image size; 0 = the single-scale path below), `pyramid_step` (default 0.7: the scale
    ratio between first-pass levels; dlib's own is 5/6), `upsample` (default 1), `min_score`
    (raw margin, default 0.5 for hog, 0.3 for cnn), `detect_max_side` (default 512; 0 = full size),
    the last three for the single-scale path and cnn only, `num_jitters` (default 0), `embed`
    (default True; False only detects), `embed_engine` ("auto" (default: onnxruntime, else dlib's own),
    "onnxruntime", "torch" or "dlib"; `num_jitters` > 0 always uses dlib's own), `threads` (the
    engine's intra-op threads, default 1; the gateway passes its model_threads, a Ray replica its
    `num_cpus`; when given, a large first pass is split over two threads only if it is >= 2 — a
    replica that reserves one CPU scans on one: splitting a 720p frame cost ~13 % more CPU for no
    wall gain on busy cores; not given, the split stays on)."""

    embedding_dim = 128

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "dlib") -> None:
        opts = Options(
            name, options,
            {"detector", "upsample", "min_score", "detect_max_side", "num_jitters", "embed", "min_face_px",
             "embed_engine", "threads", "pyramid_step"},
        )
        self._kind = opts.choice("detector", "hog", ("hog", "cnn"))
        self._min_face = opts.positive_int("min_face_px", 40 if self._kind == "hog" else 0, minimum=0)
        if self._min_face and self._kind != "hog":
            raise ModelError(f"{name}: `min_face_px` (full coverage) needs detector: hog")
        self._step = opts.get("pyramid_step", PYRAMID_STEP, float)
        if not 0.5 <= self._step < 1.0:
            raise ModelError(f"{name}: `pyramid_step` must be in [0.5, 1) (got {self._step})")
        self._upsample = opts.positive_int("upsample", 1, minimum=0)
        self._min_score = opts.get("min_score", 0.5 if self._kind == "hog" else 0.3, float)
        self._max_side = opts.positive_int("detect_max_side", 512, minimum=0)
        self._jitters = opts.positive_int("num_jitters", 0, minimum=0)
        self._embed = opts.get("embed", True, bool)
        engine_name = opts.choice("embed_engine", "auto", ENGINE_CHOICES)
        threads = opts.positive_int("threads", 1)
        self._scan_threads = min(2, threads) if options and "threads" in options else 2
        try:
            import dlib
        except ImportError as exc:
            raise ModelError(f"{name}: the 'dlib-bin' package is not importable: {exc}") from exc
        folder = dlib_models_dir()
        files = [folder / MMOD, folder / PREDICTOR, folder / RESNET]
        self.info = ModelInfo(name=name, version=weights_digest(files))
        self._dlib = dlib
        self._lock = threading.Lock()
        if self._kind == "hog":
            self._hog = dlib.get_frontal_face_detector()
            if self._min_face:  # per worker thread: single-level scanners by cell size, a verifier
                self._scanners: tuple[dict[int, Any], dict[int, Any]] = ({}, {})
                self._verifiers = (self._hog, dlib.get_frontal_face_detector())
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(folder / MMOD))
        self._predictor = dlib.shape_predictor(str(folder / PREDICTOR))
        self._resnet = dlib.face_recognition_model_v1(str(folder / RESNET))
        self._engine: EmbedEngine | None = None
        self.embed_engine = "dlib"  # the engine that computes descriptors (reported by benches and tests)
        if self._embed and self._jitters == 0 and engine_name != "dlib":
            self._engine = self._load_engine(engine_name, folder / RESNET, threads)
            if self._engine is not None:
                self.embed_engine = engine_name if engine_name != "auto" else "onnxruntime"
                self._resnet = None  # dlib's own network (~21 MB) is not used once the engine is checked

    def _load_engine(self, engine_name: str, weights: Path, threads: int) -> EmbedEngine | None:
        """The named engine, checked against dlib on a fixed chip. Under `auto` any failure (package
        missing, a weights file that is not the known network, a descriptor that differs) leaves dlib's
        own path in place — the same descriptors, slower; a named engine that fails is a ModelError."""
        name = "onnxruntime" if engine_name == "auto" else engine_name
        try:
            engine = EMBED_ENGINES[name](read_dlib_resnet(weights), threads)
            chip = _self_check_chip()
            want = np.asarray(self._resnet.compute_face_descriptor(chip), dtype=np.float64)
            got = np.asarray(engine(chip[None])[0], dtype=np.float64)
            cosine = float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got) + 1e-30))
            if not cosine >= ENGINE_MIN_COSINE:
                raise ModelError(f"{self.info.name}: embed engine {name!r} differs from dlib (cosine {cosine:.6f})")
        except ModelError as exc:
            if engine_name == "auto":
                _log.warning("%s: embed engine %r not used, dlib's own ResNet embeds (same descriptors, "
                             "~10x slower): %s", self.info.name, name, exc)
                return None
            raise
        return engine

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self._analyze(image, embed=True)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces with landmarks, not embedded (see `TwoStageFaceAnalyzer`)."""
        return self._analyze(image, embed=False)

    def _analyze(self, image: np.ndarray, *, embed: bool) -> list[DetectedFace]:
        img = check_rgb(image)
        batch = embed and self._embed and self._engine is not None
        with self._lock:
            try:
                if self._min_face:
                    found = self._cover(img)
                    faces = [self._face(img, box, score, 1.0, embed=embed and not batch) for box, score in found]
                else:
                    small, scale = _downscale(img, self._max_side)
                    faces = [self._face(img, box, score, scale, embed=embed and not batch)
                             for box, score in self._detect(small) if score >= self._min_score]
                chips = self._chips(img, faces) if batch and faces else None
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.info.name}: dlib failed: {exc}") from exc
        if chips is not None:
            faces = self._with_descriptors(faces, chips)
        faces.sort(key=lambda f: (f.bbox[1], f.bbox[0]))
        return faces

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        """`faces` (from `detect` on this image) with their embeddings."""
        if not faces or not self._embed:
            return list(faces)
        img = check_rgb(image)
        with self._lock:
            try:
                if self._engine is None:
                    return [self._embedded(img, face) for face in faces]
                chips = self._chips(img, faces)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.info.name}: dlib failed: {exc}") from exc
        return self._with_descriptors(faces, chips)

    def _chips(self, img: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        """dlib's 5-point landmarks and aligned 150×150 chip per face (the engine's input), under the lock."""
        chips = [self._dlib.get_face_chip(img, self._predictor(img, self._dlib.rectangle(*face.bbox)),
                                          CHIP_SIZE, CHIP_PADDING) for face in faces]
        return np.stack(chips).astype(np.uint8, copy=False)

    def _with_descriptors(self, faces: Sequence[DetectedFace], chips: np.ndarray) -> list[DetectedFace]:
        """`faces` with the engine's descriptors of their chips (one batch; the engine is thread-safe)."""
        assert self._engine is not None
        try:  # batches of EMBED_BATCH bound the activations (~1–2 MB a chip) on a crowded image
            raw = np.concatenate([self._engine(chips[i:i + EMBED_BATCH]) for i in range(0, len(chips), EMBED_BATCH)])
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.info.name}: embed engine {self.embed_engine!r} failed: {exc}") from exc
        return [DetectedFace(bbox=face.bbox, det_score=face.det_score, landmarks=face.landmarks,
                             embedding=self._normalised(desc)) for face, desc in zip(faces, raw, strict=True)]

    def _embedded(self, img: np.ndarray, face: DetectedFace) -> DetectedFace:
        shape = self._predictor(img, self._dlib.rectangle(*face.bbox))
        return DetectedFace(bbox=face.bbox, det_score=face.det_score, landmarks=face.landmarks,
                            embedding=self._descriptor(img, shape))

    def _descriptor(self, img: np.ndarray, shape: Any) -> np.ndarray:
        return self._normalised(self._resnet.compute_face_descriptor(img, shape, self._jitters))

    def _normalised(self, raw: Any) -> np.ndarray:
        desc = np.asarray(raw, dtype=np.float32)
        norm = float(np.linalg.norm(desc))
        if not math.isfinite(norm) or norm == 0.0:
            raise ModelError(f"{self.info.name}: degenerate face descriptor")
        return desc / np.float32(norm)

    def _detect(self, small: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        if self._kind == "hog":
            rects, scores, _idx = self._hog.run(small, self._upsample, min(self._min_score, 0.0) - 0.5)
            pairs = zip(rects, scores, strict=True)
            return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in pairs]
        found = self._cnn(small, self._upsample)
        rects = [(d.rect, float(d.confidence)) for d in found]
        return [((r.left(), r.top(), r.right(), r.bottom()), s) for r, s in rects]

    def _cover(self, img: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """Faces >= `min_face_px` at any size: one greyscale HOG pyramid from 64 / min_face_px down, then
        each candidate verified on its own crop. Boxes in `img` pixels, score = the stronger pass."""
        import cv2

        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        budget = budget_set()
        candidates = self._first_pass(grey, budget)
        # a canonical order, so that how the levels were shared between threads never changes the NMS
        kept = _nms(sorted(candidates, key=lambda c: (c[0], c[1])), 0.4)
        jobs = [(box, px) for box, score in kept if score < ACCEPT_SCORE for px in VERIFY_FACE_PX]
        workers = min(budget, self._scan_threads) if budget is not None else 1
        verified = self._verify_all(grey, jobs, workers if len(jobs) > 1 else 1)
        out: list[tuple[tuple[int, int, int, int], float]] = []
        for box, score in kept:
            if score < ACCEPT_SCORE:
                mean = sum(verified[box, px] for px in VERIFY_FACE_PX) / len(VERIFY_FACE_PX)
                if mean < VERIFY_SCORE:
                    continue
                score = max(score, mean)
            out.append((tuple(int(round(v)) for v in box), score))  # type: ignore[arg-type]
        return out

    def _verify_all(
        self, grey: np.ndarray, jobs: list[tuple[tuple[float, float, float, float], int]], workers: int
    ) -> dict[tuple[tuple[float, float, float, float], int], float]:
        """`_verify` of every (candidate box, face px) job, on `workers` threads (each with its own
        detector), shared by cost (a crop's area follows its face px)."""
        if workers < 2:
            return {(box, px): self._verify(grey, box, px, 0) for box, px in jobs}
        shares: tuple[list[tuple[tuple[float, float, float, float], int]], ...] = ([], [])
        load = [0, 0]
        for job in sorted(jobs, key=lambda j: -j[1]):
            lighter = 0 if load[0] <= load[1] else 1
            shares[lighter].append(job)
            load[lighter] += job[1] ** 2

        def run(slot: int) -> dict[tuple[tuple[float, float, float, float], int], float]:
            return {(box, px): self._verify(grey, box, px, slot) for box, px in shares[slot]}

        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(run, 1)
            return run(0) | other.result()

    def _first_pass(
        self, grey: np.ndarray, budget: int | None = None
    ) -> list[tuple[tuple[float, float, float, float], float]]:
        """HOG candidates over the pyramid levels (boxes in `grey` pixels), shared between two threads
        — each takes the most costly level left (`_LevelQueue`) — when `budget` and the `threads` option
        allow two, or, with no budget, when the pyramid is large and the option allows two."""

        h, w = grey.shape[:2]
        levels = pyramid_levels(h, w, HOG_FACE_PX / self._min_face, self._step)
        made = _LevelImages(grey, levels)  # shared by the threads: each level image is made once

        def scan(slot: int, todo: _LevelQueue) -> list[tuple[tuple[float, float, float, float], float]]:
            found: list[tuple[tuple[float, float, float, float], float]] = []
            scanners = self._scanners[slot]  # this thread's own detectors
            for k, cell in todo:
                if cell not in scanners:
                    scanners[cell] = single_level_detector(self._dlib, cell)
                rects, scores, _idx = scanners[cell].run(made.get((k, cell)), 0, CANDIDATE_SCORE)
                found += [((r.left() / k, r.top() / k, r.right() / k, r.bottom() / k), float(sc))
                          for r, sc in zip(rects, scores, strict=True)]
            return found

        # the cost of a level: HOG features (~60 %) per pixel, the filters (~40 %) per cell
        cost = [h * w * k * k * (0.6 + 0.4 * (HOG_CELL / cell) ** 2) for k, cell in levels]
        todo = _LevelQueue(levels, cost)
        workers = min(budget, self._scan_threads) if budget is not None else self._scan_threads
        big = sum(h * w * k * k for k, _ in levels) >= PARALLEL_MIN_PIXELS
        if workers < 2 or (budget is None and not big) or len(levels) < 2:
            return scan(0, todo)
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(scan, 1, todo)
            return scan(0, todo) + other.result()

    def _verify(self, grey: np.ndarray, box: tuple[float, float, float, float], face_px: int, slot: int = 0) -> float:
        """The best HOG score, overlapping `box`, on a crop around it rescaled so the face is `face_px`
        (with worker `slot`'s detector)."""
        import cv2

        x0, y0, x1, y1 = box
        w = max(x1 - x0, 1.0)
        h, wid = grey.shape[:2]
        cx0, cy0 = int(max(0, x0 - VERIFY_PAD * w)), int(max(0, y0 - VERIFY_PAD * w))
        cx1, cy1 = int(min(wid, x1 + VERIFY_PAD * w)), int(min(h, y1 + VERIFY_PAD * w))
        k = face_px / w
        crop = grey[cy0:cy1, cx0:cx1]
        if crop.size == 0:
            return VERIFY_MISSING
        crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
        rects, scores, _idx = self._verifiers[slot].run(crop, 0, -0.5)
        best = VERIFY_MISSING
        for r, sc in zip(rects, scores, strict=True):
            found = (r.left() / k + cx0, r.top() / k + cy0, r.right() / k + cx0, r.bottom() / k + cy0)
            if _iou(found, box) >= 0.3:
                best = max(best, float(sc))
        return best

    def _face(
        self, img: np.ndarray, box: tuple[int, int, int, int], score: float, scale: float, *, embed: bool = True
    ) -> DetectedFace:
        h, w = img.shape[:2]
        x0 = min(max(round(box[0] / scale), 0), w - 1)
        y0 = min(max(round(box[1] / scale), 0), h - 1)
        x1 = min(max(round(box[2] / scale), x0 + 1), w)
        y1 = min(max(round(box[3] / scale), y0 + 1), h)
        rect = self._dlib.rectangle(x0, y0, x1, y1)
        shape = self._predictor(img, rect)
        landmarks = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
        embedding = self._descriptor(img, shape) if (embed and self._embed) else None
        det_score = 1.0 / (1.0 + math.exp(-2.0 * score))
        return DetectedFace(
            bbox=(x0, y0, x1, y1), det_score=det_score, landmarks=landmarks, embedding=embedding
        )


class _LevelQueue:
    """The first pass's levels, most costly first, handed out one at a time to whichever scanning thread
    asks next (thread-safe iteration). A fixed split by estimated cost left one thread scanning alone for
    tens of ms at 2048² when the estimate or the other work on the cores was off (the 1.6× level runs
    beside the NSFW models); taken from a queue, the threads finish within about one small level of each
    other. Which thread scans a level never changes its candidates (the caller sorts them)."""

    def __init__(self, levels: Sequence[tuple[float, int]], cost: Sequence[float]) -> None:
        ranked = sorted(range(len(levels)), key=lambda i: (-cost[i], i))
        self._levels = [levels[i] for i in ranked]
        self._next = 0
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[tuple[float, int]]:
        while True:
            with self._lock:
                if self._next >= len(self._levels):
                    return
                level = self._levels[self._next]
                self._next += 1
            yield level


class _LevelImages:
    """The first pass's level images for one call, made along the pyramid's fixed chain whichever thread
    asks first (so the candidates never depend on the split): levels below 1× are shrunk from the
    previous one (area-averaging the full image for every level cost ~10% of the scan at 2048²), once,
    and shared — each of two threads made the whole chain for itself (~17 ms of CPU at 2048², #21.3);
    a level above 1× is upscaled from the full image by the one thread that scans it."""

    def __init__(self, grey: np.ndarray, levels: list[tuple[float, int]]) -> None:
        self._grey = grey
        self._levels = levels
        self._made: dict[tuple[float, int], np.ndarray] = {}
        self._next = 0  # the chain has been made up to (not including) this level
        self._source, self._source_k = grey, 1.0
        self._lock = threading.Lock()

    def _size(self, k: float) -> tuple[int, int]:
        h, w = self._grey.shape[:2]
        return max(1, round(w * k)), max(1, round(h * k))

    def get(self, level: tuple[float, int]) -> np.ndarray:
        import cv2

        grey = self._grey
        k = level[0]
        size = self._size(k)
        if size == grey.shape[1::-1]:
            return grey
        if k > 1:
            return cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        with self._lock:
            while level not in self._made:
                lk, cell = self._levels[self._next]
                self._next += 1
                lsize = self._size(lk)
                if lsize == grey.shape[1::-1]:
                    self._made[lk, cell] = grey
                elif lk <= 1:  # above 1×: not part of the chain
                    source = self._source if self._source_k > lk else grey
                    image = cv2.resize(source, lsize, interpolation=cv2.INTER_AREA)
                    self._source, self._source_k = image, lk
                    self._made[lk, cell] = image
            return self._made[level]


def _self_check_chip() -> np.ndarray:
    """A fixed 150×150 chip with structure at every scale (smooth ramps plus seeded noise): dlib's
    and an engine's descriptors of it must agree before the engine is used."""
    yy, xx = np.mgrid[0:CHIP_SIZE, 0:CHIP_SIZE].astype(np.float32)
    noise = np.random.default_rng(20261207).integers(0, 64, (CHIP_SIZE, CHIP_SIZE, 3))
    base = np.stack([xx * 1.2, yy * 1.1, (xx + yy) * 0.6], axis=-1) + noise
    return np.ascontiguousarray(np.clip(base, 0, 255).astype(np.uint8))


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    side = max(img.shape[:2])
    if max_side <= 0 or side <= max_side:
        return img, 1.0
    import cv2

    scale = max_side / side
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA)), scale


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(
    boxes: list[tuple[tuple[float, float, float, float], float]], iou: float
) -> list[tuple[tuple[float, float, float, float], float]]:
    """Highest score first; drop a box that overlaps a kept one by `iou` or more."""
    kept: list[tuple[tuple[float, float, float, float], float]] = []
    for box, score in sorted(boxes, key=lambda item: -item[1]):
        if all(_iou(box, other) < iou for other, _ in kept):
            kept.append((box, score))
    return kept
