"""Why: the optional adapters need libraries only some venvs have. Tests that need torchvision
(open_clip, facenet-pytorch) run in the extras venv (.venv-extras, scripts/install_extras.sh) and
skip elsewhere with the reason; insightface tests need `insightface` + `onnx`. Tiny models are built
once per session into a temporary folder (see tests/models/tiny.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.models import tiny

EXTRAS_HINT = (
    "run in the extras venv: bash scripts/install_extras.sh && .venv-extras/bin/python -m pytest tests/models"
)


@cache
def torchvision_works() -> bool:
    """torchvision imports and its C++ ops load (checked in a child process: a broken torchvision
    must not be imported into this one, where it would break transformers)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    code = "import torch, torchvision; torchvision.ops.nms(torch.zeros((1, 4)), torch.ones(1), 0.5)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0  # noqa: S603


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_torchvision = pytest.mark.skipif(
    not torchvision_works(), reason=f"needs a working torchvision (not in the default venv); {EXTRAS_HINT}"
)
needs_openclip = pytest.mark.skipif(
    not (torchvision_works() and _have("open_clip")), reason=f"needs open_clip + torchvision; {EXTRAS_HINT}"
)
needs_mtcnn = pytest.mark.skipif(
    not (torchvision_works() and _have("facenet_pytorch")),
    reason=f"needs facenet-pytorch + torchvision; {EXTRAS_HINT}",
)
needs_insightface = pytest.mark.skipif(
    not _have("insightface", "onnx"),
    reason="needs insightface + onnx (pip install --no-deps insightface==2.1 and the [insightface] extra); "
    + EXTRAS_HINT,
)
needs_transformers = pytest.mark.skipif(not _have("transformers"), reason="needs transformers")


@pytest.fixture(scope="session")
def insightface_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _have("onnx"):
        pytest.skip("needs onnx to build the tiny insightface pack")
    return tiny.insightface_pack(tmp_path_factory.mktemp("insightface") / "tiny_pack")


@pytest.fixture(scope="session")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.hf_image_classifier(tmp_path_factory.mktemp("hf") / "vit")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.hf_text_classifier(tmp_path_factory.mktemp("hf") / "bert")


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.openclip_dir(tmp_path_factory.mktemp("openclip") / "clip")
