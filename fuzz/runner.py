"""Why: one driver for every fuzz target, so the same target runs three ways — coverage-guided under
atheris (`--atheris`, when it is installed), as a plain bounded random-input loop with a fixed seed
(the default: needs nothing beyond the project), and from pytest (`loop()`).

    python fuzz/run_media.py --iterations 20000 --seed 1             # plain loop
    python fuzz/run_media.py --atheris --iterations 200000            # libFuzzer via atheris
    python fuzz/run_policy.py --artifacts /tmp/crashes                # keep escaping inputs

Exit status 0: only documented exceptions escaped; 1: something else escaped (its input is
written to --artifacts, default ./fuzz-artifacts, and its traceback printed)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LoopReport:
    target: str
    iterations: int
    seed: int
    elapsed_s: float = 0.0
    escaped: list[tuple[str, str, bytes]] = field(default_factory=list)  # (type, message, input)
    kinds: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "iterations": self.iterations,
            "seed": self.seed,
            "elapsed_s": round(self.elapsed_s, 2),
            "outcomes": dict(self.kinds),
            "escaped": [f"{kind}: {msg[:200]}" for kind, msg, _ in self.escaped],
        }


def _inherited_peak_rss_mb() -> int:
    """libFuzzer's RSS limit reads the peak RSS (getrusage), which Linux carries across exec from the
    process that forked us (a test runner of several GB): the 4 GB budget is for our own growth."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def loop(name: str, iterations: int, seed: int = 0, *, stop_after: int = 5) -> LoopReport:
    """Mutate the target's seeds `iterations` times with `random.Random(seed)`; collect escapes."""
    from fuzz.targets import classify, mutate, targets

    target = targets()[name]
    rng = random.Random(seed)
    corpus = list(target.seeds())
    report = LoopReport(name, iterations, seed)
    start = time.perf_counter()
    for i in range(iterations):
        data = (
            corpus[i]
            if i < len(corpus)
            else mutate(rng.choice(corpus), rng, target.dictionary, target.max_len)
        )
        kind, exc = classify(target, data)
        report.kinds[kind] += 1
        if exc is None:
            continue
        report.escaped.append((type(exc).__name__, "".join(traceback.format_exception(exc))[-2000:], data))
        if len(report.escaped) >= stop_after:
            break
    report.elapsed_s = time.perf_counter() - start
    return report


def _atheris(name: str, iterations: int, seed: int, artifacts: Path, max_len: int | None) -> int:
    import atheris

    # Instrument the Python code on the targets' paths (ours, Pillow's plugins, PyYAML's scanner and
    # parser) by importing it here; the C decoders (libjpeg, libwebp, FFmpeg) are not instrumented.
    with atheris.instrument_imports(include=["gateway", "fuzz", "PIL", "yaml"]):
        import PIL.Image
        import PIL.ImageOps
        import PIL.JpegImagePlugin
        import PIL.PngImagePlugin
        import PIL.TiffImagePlugin
        import PIL.WebPImagePlugin
        import yaml

        import gateway.media
        import gateway.policy.loader
        import gateway.policy.schema
        import gateway.video.intake
        from fuzz.targets import targets

        del PIL, yaml, gateway

        target = targets()[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-corpus-"))
    for data in target.seeds():
        (corpus / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-runs={iterations}",
        f"-seed={seed}",
        f"-max_len={max_len or target.max_len}",
        f"-artifact_prefix={artifacts}/",
        "-timeout=30",
        f"-rss_limit_mb={4096 + _inherited_peak_rss_mb()}",
    ]
    if target.dictionary:
        dict_file = corpus.parent / f"fuzz-{name}.dict"
        dict_file.write_text(
            "".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in target.dictionary)
        )
        argv.append(f"-dict={dict_file}")

    def test_one(data: bytes) -> None:
        with contextlib.suppress(*target.documented):
            target.one(data)

    atheris.Setup(argv, test_one)
    atheris.Fuzz()
    return 0


def main(name: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"fuzz the {name!r} target (fuzz/targets.py)")
    parser.add_argument("--iterations", type=int, default=10_000, help="inputs to try (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--atheris", action="store_true", help="coverage-guided fuzzing with atheris/libFuzzer"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path("fuzz-artifacts"),
        help="where escaping inputs are written (default ./fuzz-artifacts)",
    )
    parser.add_argument("--max-len", type=int, default=None, help="atheris: the longest input")
    args = parser.parse_args(argv)
    if args.atheris:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        return _atheris(name, args.iterations, args.seed, args.artifacts, args.max_len)
    report = loop(name, args.iterations, args.seed)
    print(json.dumps(report.as_dict(), indent=2))
    if not report.escaped:
        return 0
    args.artifacts.mkdir(parents=True, exist_ok=True)
    for kind, trace, data in report.escaped:
        path = args.artifacts / f"{name}-{kind}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
        path.write_bytes(data)
        print(f"\n== {kind} (input: {path})\n{trace}", file=sys.stderr)
    return 1
