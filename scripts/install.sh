#!/usr/bin/env bash
# Why: one idempotent install used by both README commands and CI. pip only (torch is pinned
# to the CPU build that lies on disk; a looser pin would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install -q "torch==2.13.0"
# invisible-watermark declares opencv-python (needs libGL) and unpinned torch: install it without deps.
$PIP install -q --no-deps "invisible-watermark==0.2.0"
# [ray]: Ray Serve for the model workers and the tests' local cluster (the gateway does not import it).
$PIP install -q -e ".[dev,ray]" "torch==2.13.0"
# Fail early if a model package combination is broken (e.g. two OpenCV builds in one cv2/).
.venv/bin/python scripts/check_imports.py
