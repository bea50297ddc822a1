#!/usr/bin/env bash
# Why: open_clip, timm and facenet-pytorch's MTCNN need torchvision, and no torchvision loads beside
# the default torch 2.13.0+cpu (a broken one also breaks transformers and so the MiniLM prompt model).
# So the torchvision-dependent adapters live in a second virtualenv, .venv-extras, with the matching
# pair torch 2.14.1 + torchvision 0.29.1 (both on local disk for pip), holding the whole project plus
# the [extras] backends. The default .venv and the README's commands are untouched. Idempotent.
#
#   bash scripts/install_extras.sh
#   .venv-extras/bin/python -m pytest -q -p no:cacheprovider tests/models
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${CONSENTGATE_EXTRAS_VENV:-.venv-extras}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Every pip command repeats the pair, so nothing can resolve another torch or torchvision.
PAIR=("torch==2.14.1" "torchvision==0.29.1")
$PIP install -q "${PAIR[@]}"
# --no-deps: invisible-watermark and insightface declare opencv-python (shares cv2/ with the
# headless build); facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2. Their real needs are listed
# in the [insightface] / [extras] extras or already in the default dependencies.
# resemblyzer: the default voice model (its encoder weights are in the wheel); --no-deps as in install.sh
$PIP install -q --no-deps "invisible-watermark==0.2.0" "insightface==2.1" "facenet-pytorch==2.6.0" "resemblyzer==0.1.4"
# pip then reports facenet-pytorch / insightface / invisible-watermark "requirements" as conflicts:
# expected — those pins and opencv-python are exactly what the --no-deps installs leave out.
$PIP install -q -e ".[dev,extras]" "${PAIR[@]}"
"$VENV/bin/python" scripts/check_imports.py
"$VENV/bin/python" - <<'PYEOF'
import importlib

import torch
import torchvision

for name in ["torchvision.ops", "open_clip", "timm", "facenet_pytorch", "insightface", "onnx", "transformers"]:
    importlib.import_module(name)
torchvision.ops.nms(torch.zeros((1, 4)), torch.ones(1), 0.5)
print(f"extras import: ok (torch {torch.__version__}, torchvision {torchvision.__version__})")
PYEOF
