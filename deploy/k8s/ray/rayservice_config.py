"""Why: the RayService must deploy exactly the model workers that `workers.yaml` describes, and a
hand-edited copy of them inside the manifest would drift. This writes `spec.serveConfigV2` of
rayservice.yaml from workers.yaml (through the same code the local deploy uses) and leaves the
rest of the file, comments included, as it is.

    python deploy/k8s/ray/rayservice_config.py            # rewrite serveConfigV2
    python deploy/k8s/ray/rayservice_config.py --check    # exit 1 when it would change (CI)
    python deploy/k8s/ray/rayservice_config.py --workers deploy/k8s/ray/workers-gpu.yaml --out gpu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from classifiers.rayserve.__main__ import serve_config  # noqa: E402
from classifiers.rayserve.config import load_config  # noqa: E402
from classifiers.registry import builtin_registry  # noqa: E402

START = "  serveConfigV2: |\n"
END = "  rayClusterConfig:\n"


def render(manifest: str, workers: Path) -> str:
    cfg = load_config(workers, builtin_registry())
    body = yaml.safe_dump(serve_config(cfg), sort_keys=False, width=120)
    block = f"    # GENERATED from {workers.name} by rayservice_config.py: edit that file, not this block\n"
    block += "".join(f"    {line}\n" for line in body.splitlines())
    head, rest = manifest.split(START, 1)
    _old, tail = rest.split(END, 1)
    return head + START + block + END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=Path, default=HERE / "workers.yaml")
    parser.add_argument("--manifest", type=Path, default=HERE / "rayservice.yaml")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of over --manifest")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = args.manifest.read_text()
    wanted = render(current, args.workers)
    if args.check:
        if wanted != current:
            print(f"{args.manifest} is out of date with {args.workers}; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    (args.out or args.manifest).write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
