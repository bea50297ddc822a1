"""tileSync: the fourth revision's detector against the fifth's on the same marked copies, in one run.

Why: the fifth revision changes the detector only (a shrunk copy's 64-px fold is repeated 2 x 2
instead of upsampled bilinearly, and its whitened spectrum is weighed by the residual high-pass's
response: ``_tilesync.fold(fine=True)``), so the embedder, the format and the ids are the same and
the question is which detector reads more of the *same* copies. Each image is marked once with
its id (``--id-seed``, derived as in ``bench/release.py``), every transform of
``bench/release.SHARING`` named in ``--transforms`` is applied, and both detectors read every copy.
Prints per transform the detection rate and mean coded-bit accuracy (at the detected geometry,
else the best over the hypotheses), the misses, PSNR, and each detector's CPU time.

Run: ``PYTHONPATH=. .venv/bin/python bench/mark_half.py [--images 200] [--id-seed 7]
[--transforms "jpeg q50,webp q60,resize 0.5x,crop 10%,crop 25%,rotate 2deg"] [--only small,grass]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.imageset import TestImage, marked_set  # noqa: E402
from bench.mark_whiten import _id, _read  # noqa: E402
from bench.release import SHARING, select_images  # noqa: E402
from gateway.provenance.tilesync import TileSyncWatermarker  # noqa: E402

CONFIGS = ("r4", "r5")
STATE: dict[str, Any] = {}


def _one(image: TestImage) -> tuple[str, float | None, dict[str, dict[str, tuple[bool, float, float]]]]:
    wm_id = _id(STATE["seed"], image)
    out: dict[str, dict[str, tuple[bool, float, float]]] = {c: {} for c in CONFIGS}
    try:
        marked = STATE["r5"].embed(image.rgb, wm_id)  # the embedder is the same in both
    except Exception:  # noqa: BLE001 - below the minimum size
        return image.name, None, out
    for tr in STATE["transforms"]:
        copy = SHARING[tr](marked)
        for c in CONFIGS:
            out[c][tr] = _read(STATE[c], copy, wm_id)
    return image.name, float(cv2.PSNR(image.rgb, marked)), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--id-seed", type=int, default=7)
    parser.add_argument("--transforms", default="jpeg q50,webp q60,resize 0.5x,crop 10%,crop 25%,rotate 2deg")
    parser.add_argument("--only", default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    transforms = [t.strip() for t in args.transforms.split(",") if t.strip()]
    STATE.update(seed=args.id_seed, transforms=transforms, r4=TileSyncWatermarker(fine_half=False, half_first=False),
                 r5=TileSyncWatermarker())
    images = select_images(marked_set(args.images), args.only)
    print(f"{len(images)} images, id seed {args.id_seed}, transforms: {', '.join(transforms)}; "
          f"load {os.getloadavg()[0]:.1f} at start", flush=True)
    found = {c: {t: 0 for t in transforms} for c in CONFIGS}
    acc: dict[str, dict[str, list[float]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    cpu = {c: {t: 0.0 for t in transforms} for c in CONFIGS}
    missed: dict[str, dict[str, list[str]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    psnr: list[float] = []
    wall = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for done, (name, p, out) in enumerate(pool.imap_unordered(_one, images), start=1):
            if p is None:
                continue
            psnr.append(p)
            for c in CONFIGS:
                for t, (ok, a, seconds) in out[c].items():
                    found[c][t] += ok
                    acc[c][t].append(a)
                    cpu[c][t] += seconds
                    if not ok:
                        missed[c][t].append(name)
            if done % 20 == 0:
                print(f"  {done}/{len(images)} images, load {os.getloadavg()[0]:.1f}", flush=True)
    n = max(len(psnr), 1)
    print(f"{len(psnr)} marked images, wall {time.perf_counter() - wall:.0f} s, load {os.getloadavg()[0]:.1f} at end")
    print(f"{'shared as':14s} | " + " | ".join(f"{c}: detected / bit acc / detect CPU" for c in CONFIGS))
    for t in transforms:
        cells = [f"{100 * found[c][t] / n:5.1f} % / {np.mean(acc[c][t]):.3f} / {cpu[c][t]:.0f} s" for c in CONFIGS]
        print(f"{t:14s} | " + " | ".join(cells))
    print(f"PSNR: mean {np.mean(psnr):.2f} dB, min {np.min(psnr):.2f} dB")
    for c in CONFIGS:
        for t in transforms:
            if missed[c][t]:
                print(f"{c} missed after {t}: {', '.join(sorted(missed[c][t]))}")


if __name__ == "__main__":
    main()
