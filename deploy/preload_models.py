"""Why: the image must carry every model weight it needs, because a gateway in production may have
no route to the internet. The Dockerfile runs this with the network switched off: it loads every
model that the policy bundle (and its tenant overlays) names, exactly as a replica does at start,
and fails the build if any weight file is missing or would have to be downloaded.

Usage: python deploy/preload_models.py [POLICY_DIR] (default: CONSENTGATE_POLICIES or ./policies)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from classifiers.registry import builtin_registry
    from gateway.policy.loader import PolicyError, load_bundle
    from gateway.policy.runtime import ModelPool

    directory = Path(argv[1] if len(argv) > 1 else os.environ.get("CONSENTGATE_POLICIES", "policies"))
    start = time.perf_counter()
    pool = ModelPool(builtin_registry(), threads=1)
    try:
        bundle = load_bundle(directory, is_registered=pool.registry.has)
        pool.build(bundle.policy, source=str(directory / "default.yaml"))
        for tenant, policy in bundle.overlays.items():
            pool.build(policy, source=str(directory / "tenants" / f"{tenant}.yaml"))
    except PolicyError as exc:
        print(f"cannot load the models of {directory}:\n{exc}", file=sys.stderr)
        return 1
    for model in pool.loaded():
        print(f"loaded {model['name']} (weights {model['version']})")
    print(f"{len(pool.loaded())} models loaded offline in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
