"""tileSync r3 against r4 (whitened fold) on the same images, ids and transforms, in one run.

Why: the fourth revision of the default mark changes how the folded tile is read (its spectrum
whitened before the sync correlation and the bit scores, ``_tilesync.whiten``) and what the
informed embedder cancels (the host's share of that whitened statistic). Whether that helps is a
question for the same copies: each image is marked with the same id (``--id-seed``, as in
``bench/release.py``) by both revisions, every transform of ``bench/release.SHARING`` named in
``--transforms`` is applied to each marked image, and each revision's detector reads its own
copies; r4's detector also reads r3's copies (old marks, new detector: what verify meets for
files released before the change). Prints per transform the detection rate and mean coded-bit
accuracy (at the detected geometry, else the best over the hypotheses), the misses, PSNR, and
the detector's CPU time for each, with the ratio.

Run: ``PYTHONPATH=. .venv/bin/python bench/mark_whiten.py [--images 200] [--id-seed 7]
[--transforms "jpeg q50,webp q60,resize 0.5x,crop 10%,crop 25%,rotate 2deg"] [--only small,grass]``
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import time
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.imageset import TestImage, marked_set  # noqa: E402
from bench.release import SHARING, select_images  # noqa: E402
from gateway.provenance.tilesync import TileSyncWatermarker  # noqa: E402

CONFIGS = ("r3", "r4", "r4 reads r3")
STATE: dict[str, Any] = {}


def _id(seed: int, image: TestImage) -> int:
    digest = hashlib.sha256(f"{seed}/{image.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << 40)


def _read(marker: TileSyncWatermarker, copy: np.ndarray, wm_id: int) -> tuple[bool, float, float]:
    start = time.process_time()
    try:
        found = marker.detect(copy)
    except Exception:  # noqa: BLE001 - a copy too small to read: not found
        return False, 0.5, time.process_time() - start
    cpu = time.process_time() - start
    ok = found.wm_id == wm_id
    if ok and found.bit_accuracy_estimate is not None:
        return ok, float(found.bit_accuracy_estimate), cpu
    return ok, marker.raw_bit_accuracy(copy, wm_id), cpu


def _one(job: tuple[int, TestImage]) -> tuple[str, dict[str, float], dict[str, dict[str, tuple[bool, float, float]]]]:
    index, image = job
    old, new = STATE["r3"], STATE["r4"]
    wm_id = _id(STATE["seed"], image)
    psnr: dict[str, float] = {}
    out: dict[str, dict[str, tuple[bool, float, float]]] = {c: {} for c in CONFIGS}
    try:
        marked = {"r3": old.embed(image.rgb, wm_id), "r4": new.embed(image.rgb, wm_id)}
    except Exception:  # noqa: BLE001 - below the minimum size
        return image.name, psnr, out
    for name, img in marked.items():
        psnr[name] = float(cv2.PSNR(image.rgb, img))
    for tr in STATE["transforms"]:
        c3, c4 = SHARING[tr](marked["r3"]), SHARING[tr](marked["r4"])
        out["r3"][tr] = _read(old, c3, wm_id)
        out["r4"][tr] = _read(new, c4, wm_id)
        if index % STATE["old_every"] == 0:
            out["r4 reads r3"][tr] = _read(new, c3, wm_id)
    return image.name, psnr, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--id-seed", type=int, default=7)
    parser.add_argument("--transforms", default="jpeg q50,webp q60,resize 0.5x,crop 10%,crop 25%,rotate 2deg")
    parser.add_argument("--only", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--old-every", type=int, default=4, help="r4's detector also reads r3's copies of every "
                        "N-th image")
    args = parser.parse_args(argv)
    transforms = [t.strip() for t in args.transforms.split(",") if t.strip()]
    STATE.update(seed=args.id_seed, old_every=max(1, args.old_every), transforms=transforms,
                 r3=TileSyncWatermarker(whiten=False), r4=TileSyncWatermarker())
    images = select_images(marked_set(args.images), args.only)
    print(f"{len(images)} images, id seed {args.id_seed}, transforms: {', '.join(transforms)}; "
          f"load {os.getloadavg()[0]:.1f} at start", flush=True)
    found = {c: {t: 0 for t in transforms} for c in CONFIGS}
    acc: dict[str, dict[str, list[float]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    cpu = {c: 0.0 for c in CONFIGS}
    missed: dict[str, dict[str, list[str]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    psnr: dict[str, list[float]] = {"r3": [], "r4": []}
    marked = 0
    counted = {c: 0 for c in CONFIGS}  # copies per transform each config read
    wall = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for done, (name, p, out) in enumerate(pool.imap_unordered(_one, enumerate(images)), start=1):
            if not p:
                continue
            marked += 1
            for k, v in p.items():
                psnr[k].append(v)
            for c in CONFIGS:
                counted[c] += bool(out[c])
                for t, (ok, a, seconds) in out[c].items():
                    found[c][t] += ok
                    acc[c][t].append(a)
                    cpu[c] += seconds
                    if not ok:
                        missed[c][t].append(name)
            if done % 20 == 0:
                print(f"  {done}/{len(images)} images, load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{marked} marked images, wall {time.perf_counter() - wall:.0f} s, load {os.getloadavg()[0]:.1f} at end")
    print(f"{'shared as':14s} | " + " | ".join(f"{c}: detected / bit acc" for c in CONFIGS))
    for t in transforms:
        cells = [f"{100 * found[c][t] / max(counted[c], 1):5.1f} % / {np.mean(acc[c][t]):.3f} ({counted[c]})"
                 for c in CONFIGS]
        print(f"{t:14s} | " + " | ".join(cells))
    for k, v in psnr.items():
        print(f"PSNR {k}: mean {np.mean(v):.2f} dB, min {np.min(v):.2f} dB")
    print(f"detect CPU (all copies): r3 {cpu['r3']:.0f} s, r4 {cpu['r4']:.0f} s, ratio r4/r3 "
          f"{cpu['r4'] / max(cpu['r3'], 1e-9):.2f}; r4 reading r3's copies (every {args.old_every}th image) "
          f"{cpu['r4 reads r3']:.0f} s")
    for c in CONFIGS:
        for t in transforms:
            if missed[c][t]:
                print(f"{c} missed after {t}: {', '.join(sorted(missed[c][t]))}")


if __name__ == "__main__":
    main()
