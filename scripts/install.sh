#!/usr/bin/env bash
# Why: one idempotent install used by both README commands and CI. pip only (torch is pinned
# to the CPU build that lies on disk; a looser pin would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# espeak-ng renders the synthetic voices the voice tests speak with (never personal recordings).
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "espeak-ng is missing (the voice tests need it): apt-get install espeak-ng" >&2
  fi
fi
# curl and jq run the README's and docs/api.md's examples in the doc test (tests/docs).
if ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl jq >/dev/null
  else
    echo "curl or jq is missing (the doc examples test needs them): apt-get install curl jq" >&2
  fi
fi
PIP=".venv/bin/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install -q "torch==2.13.0"
# invisible-watermark declares opencv-python (needs libGL) and unpinned torch: install it without deps.
$PIP install -q --no-deps "invisible-watermark==0.2.0"
# resemblyzer ships the voice encoder weights (pretrained.pt); it declares librosa (numba) and
# `webrtcvad` (no wheel), neither needed: classifiers/voice_resemblyzer.py loads only the weights,
# and webrtcvad-wheels (a core dependency) provides the VAD module.
$PIP install -q --no-deps "resemblyzer==0.1.4"
# [ray]: Ray Serve for the model workers and the tests' local cluster (the gateway does not import it).
$PIP install -q -e ".[dev,ray]" "torch==2.13.0"
# Fail early if a model package combination is broken (e.g. two OpenCV builds in one cv2/).
.venv/bin/python scripts/check_imports.py
# The console's browser tests: Debian chromium (apt, as root) and axe-core (npm).
bash scripts/install_browser.sh
