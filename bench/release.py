"""Release-path benchmark. Why: watermark robustness and cost decide which method a policy
should pick; this prints both, measured on the real test images in one run.

Robustness part (``robustness_rows`` / ``format_robustness``): for each method and image, PSNR,
embed and decode time of our implementation against invisible-watermark's own code (the
baseline, same run, ratio printed), and after each transform (JPEG q75 and q50, resize 0.5x,
brightness +10%, crop 10%) the raw bit accuracy and whether ``detect`` recovered the id.
Pipeline part (``pipeline_comparison``): POST /v1/release of a 1024² render through the app
(in-process ASGI client, default policy, real models) versus its raw stages called directly on
the same image — decode, the output-check models, watermark embed, encode, C2PA sign — and the
ratio (goal <= 1.2).

Run: ``.venv/bin/python bench/release.py [--quick] [--pipeline-only]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gateway.provenance import _dwtdctsvd
from gateway.provenance.marks import make_watermarker, new_watermark_id
from gateway.provenance.watermark import DwtDctSvdWatermarker, RivaGanWatermarker, Watermarker

Image8 = NDArray[np.uint8]


def _jpeg(rgb: Image8, quality: int) -> Image8:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()


def _resize(rgb: Image8, factor: float) -> Image8:
    h, w = rgb.shape[:2]
    return np.asarray(cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA),
                      dtype=np.uint8)


def _crop(rgb: Image8, fraction: float) -> Image8:
    h, w = rgb.shape[:2]
    dy, dx = round(h * fraction / 2), round(w * fraction / 2)
    return np.ascontiguousarray(rgb[dy:h - dy, dx:w - dx])


TRANSFORMS: dict[str, Callable[[Image8], Image8]] = {
    "none": lambda x: x,
    "jpeg75": lambda x: _jpeg(x, 75),
    "jpeg50": lambda x: _jpeg(x, 50),
    "resize0.5": lambda x: _resize(x, 0.5),
    "bright+10%": lambda x: np.clip(x.astype(np.float32) + 25.5, 0, 255).astype(np.uint8),
    "bright*1.1": lambda x: np.clip(x.astype(np.float32) * 1.1, 0, 255).astype(np.uint8),
    "crop10%": lambda x: _crop(x, 0.10),
}


def default_images() -> dict[str, Image8]:
    import skimage.data

    sk: Any = skimage.data
    astronaut = np.asarray(sk.astronaut(), dtype=np.uint8)
    big = np.asarray(cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    coffee = np.asarray(sk.coffee(), dtype=np.uint8)
    return {"astronaut512": astronaut, "astronaut1024": big, "coffee": coffee}


@dataclass
class RobustnessRow:
    method: str
    image: str
    size: str
    psnr_db: float
    embed_ms: float
    decode_ms: float
    baseline_embed_ms: float
    baseline_decode_ms: float
    bit_accuracy: dict[str, float] = field(default_factory=dict)
    recovered: dict[str, bool] = field(default_factory=dict)


def _raw_bit_accuracy(marker: Watermarker, rgb: Image8, sent: NDArray[np.uint8]) -> float:
    """Fraction of payload bits read correctly (best over the scales the detector tries)."""
    if isinstance(marker, RivaGanWatermarker):
        return float(((marker.read_raw(rgb) > 0.52).astype(np.uint8) == sent).mean())
    assert isinstance(marker, DwtDctSvdWatermarker)
    best = 0.0
    for scale in marker.detect_scales:
        img = rgb if scale == 1.0 else _resize(rgb, scale)
        soft = _dwtdctsvd.read_soft(img, sent.shape[0], marker.strength)
        best = max(best, float(((soft > 0.5).astype(np.uint8) == sent).mean()))
    return best


def _time_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _baseline(method: str, rgb: Image8, bits: NDArray[np.uint8], repeat: int,
              options: dict[str, Any]) -> tuple[float, float]:
    """invisible-watermark's own embed and decode of the same bits (BGR in, as it expects)."""
    configs = {"scales": [0, options["strength"], 0]} if "strength" in options else {}
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits.tolist())
    if method == "rivaGan":
        WatermarkEncoder.loadModel()
    marked: list[Any] = []
    embed_ms = _time_ms(lambda: marked.append(encoder.encode(bgr, method, **configs)), repeat)
    decoder = WatermarkDecoder("bits", bits.shape[0])
    decode_ms = _time_ms(lambda: decoder.decode(marked[-1], method, **configs), repeat)
    return embed_ms, decode_ms


DEFAULT_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("dwtDctSvd", {}), ("dwtDctSvd", {"strength": 60}), ("rivaGan", {}),
)


def measure(marker: Watermarker, name: str, rgb: Image8, *, label: str, repeat: int,
            baseline_options: dict[str, Any] | None) -> RobustnessRow:
    """One row: cost, PSNR and robustness of ``marker`` on one image."""
    wm_id = new_watermark_id(marker.method)
    sent = marker.codec.encode(wm_id)  # type: ignore[attr-defined]
    out: list[Image8] = []
    embed_ms = _time_ms(lambda: out.append(marker.embed(rgb, wm_id)), repeat)
    marked = out[-1]
    decode_ms = _time_ms(lambda: marker.detect(marked), repeat)
    nan = float("nan")
    base = (_baseline(marker.method, rgb, sent, repeat, baseline_options)
            if baseline_options is not None else (nan, nan))
    row = RobustnessRow(label, name, f"{rgb.shape[1]}x{rgb.shape[0]}", float(cv2.PSNR(rgb, marked)),
                        embed_ms, decode_ms, *base)
    for tname, transform in TRANSFORMS.items():
        copy = transform(marked)
        row.bit_accuracy[tname] = _raw_bit_accuracy(marker, copy, sent)
        row.recovered[tname] = marker.detect(copy).wm_id == wm_id
    return row


def robustness_rows(images: dict[str, Image8] | None = None,
                    variants: tuple[tuple[str, dict[str, Any]], ...] = DEFAULT_VARIANTS,
                    *, repeat: int = 3, baseline: bool = True) -> list[RobustnessRow]:
    """The robustness table as data (the pipeline benchmark calls this too)."""
    images = images if images is not None else default_images()
    rows = []
    for method, options in variants:
        marker = make_watermarker(method, **options)
        marker.detect(next(iter(images.values())))  # load models outside the timings
        label = method + "".join(f" {k}={v}" for k, v in options.items())
        for name, rgb in images.items():
            rows.append(measure(marker, name, rgb, label=label, repeat=1 if method == "rivaGan" else repeat,
                                baseline_options=options if baseline else None))
    return rows


def format_robustness(rows: list[RobustnessRow]) -> str:
    names = list(TRANSFORMS)
    head = ["method", "image", "size", "PSNR", "embed ms (ours/base/ratio)", "decode ms (ours/base/ratio)"]
    lines = [" | ".join(head + [f"{t} acc/id" for t in names])]
    for r in rows:
        cells = [r.method, r.image, r.size, f"{r.psnr_db:.1f}",
                 f"{r.embed_ms:.0f}/{r.baseline_embed_ms:.0f}/{r.baseline_embed_ms / r.embed_ms:.1f}x",
                 f"{r.decode_ms:.0f}/{r.baseline_decode_ms:.0f}/{r.baseline_decode_ms / r.decode_ms:.1f}x"]
        cells += [f"{r.bit_accuracy[t]:.2f}/{'yes' if r.recovered[t] else 'NO'}" for t in names]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def pipeline_comparison(n: int = 10, size: int = 1024) -> tuple[float, float]:
    """Median seconds of /v1/release (app) and of the raw stages on the same 1024² JPEG."""
    import json
    import tempfile
    from pathlib import Path

    import skimage.data
    from fastapi.testclient import TestClient

    from classifiers.registry import builtin_registry
    from gateway.app import create_app
    from gateway.media import MediaLimits, decode_image, encode_image
    from gateway.provenance import C2paSigner, ReleaseClaim
    from gateway.settings import Settings

    repo = Path(__file__).resolve().parents[1]
    rgb = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.LANCZOS))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-release-"))
    settings = Settings(data_dir=tmp, policies_dir=repo / "policies")
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        key = gw.apikeys.create("bench", "generator")[1]
        headers = {"Authorization": f"Bearer {key}"}
        form = {"request": json.dumps({"use": "txt2img"})}
        app_times = []
        for i in range(n + 2):
            t = time.perf_counter()
            r = client.post("/v1/release", headers=headers, data=form, files={"media": ("r.jpg", data, "image/jpeg")})
            assert r.status_code == 200, r.text
            if i >= 2:
                app_times.append(time.perf_counter() - t)
        pki = gw.provenance.pki
    reg = builtin_registry()
    models = [reg.create("nsfw", "opennsfw", {}), reg.create("nsfw", "nudenet", {})]
    face = reg.create("face", "dlib", {})
    hasher = reg.create("hash", "pdq", {})
    marker = make_watermarker("dwtDctSvd")
    signer = C2paSigner.from_files(pki.signing_cert_chain, pki.signing_key)
    raw_times = []
    for i in range(n + 2):
        t = time.perf_counter()
        img = decode_image(data, MediaLimits())
        for m in models:
            m.classify([img.working])
        face.analyze(img.working)
        hasher.hashes(img.working)
        marked = marker.embed(img.rgb, new_watermark_id("dwtDctSvd"))
        encoded = encode_image(marked, "image/jpeg")
        signer.sign(encoded, "image/jpeg", ReleaseClaim(decision_id="0" * 32, policy_digest="0" * 64))
        if i >= 2:
            raw_times.append(time.perf_counter() - t)
    return statistics.median(app_times), statistics.median(raw_times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="dwtDctSvd only, one repetition")
    parser.add_argument("--pipeline-only", action="store_true", help="only the /v1/release comparison")
    parser.add_argument("--n", type=int, default=10)
    args = parser.parse_args(argv)
    app_s, raw_s = pipeline_comparison(args.n)
    print(f"release 1024² JPEG: /v1/release {app_s * 1000:.1f} ms, raw stages {raw_s * 1000:.1f} ms, "
          f"ratio {app_s / raw_s:.2f} (goal <= 1.2)\n")
    if args.pipeline_only:
        return
    variants = DEFAULT_VARIANTS[:1] if args.quick else DEFAULT_VARIANTS
    rows = robustness_rows(variants=variants, repeat=1 if args.quick else 3)
    print("Watermark robustness (acc = raw payload bit accuracy, id = detect() recovered the id);")
    print("baseline = invisible-watermark 0.2.0's own embed/decode of the same bits; ratio = base / ours;")
    print("bright+10% adds 10% of full scale to R, G and B; bright*1.1 multiplies them by 1.1\n")
    print(format_robustness(rows))


if __name__ == "__main__":
    main()
