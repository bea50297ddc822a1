"""The client installs and imports on its own: the `consentgate-client` wheel requires httpx and
nothing else, and `consentgate_client` imports in an interpreter that sees only the standard library,
httpx's own dependency closure and the package itself (no numpy, no gateway, no model stack)."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closure(dist: str) -> set[str]:
    """The distributions `dist` needs (its requirements without extras, recursively)."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = re.split(r"[ ;<>=!~\[]", todo.pop(), maxsplit=1)[0].lower()
        if name in seen:
            continue
        seen.add(name)
        for req in md.requires(name) or []:
            if "extra ==" in req:
                continue
            marker = req.partition(";")[2]
            if marker and "python_version" in marker and "< \"3.11\"" in marker.replace("'", '"'):
                continue
            todo.append(req)
    return seen


def _top_level(dist: str) -> set[Path]:
    """The top-level modules and packages `dist` installed."""
    found = md.distribution(dist)
    tops = {Path(str(f)).parts[0] for f in found.files or []}
    return {Path(str(found.locate_file(t))) for t in tops
            if not t.endswith((".dist-info", ".data", ".pth")) and t not in ("..", "__pycache__")}


def test_wheel_requires_only_httpx(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",  # noqa: S603
                    "-w", str(tmp_path), str(ROOT / "client")], check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("consentgate_client-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert [re.split(r"[ <>=]", r, maxsplit=1)[0] for r in requires] == ["httpx"]
    packages = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert packages == {"consentgate_client"}
    assert "consentgate_client/py.typed" in names


def test_imports_with_httpx_alone(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for dist in sorted(_closure("httpx")):
        for path in _top_level(dist):
            if not (site / path.name).exists():
                (site / path.name).symlink_to(path)
    (site / "consentgate_client").symlink_to(ROOT / "consentgate_client")
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "import consentgate_client as c\n"
        "with c.ConsentgateClient('http://127.0.0.1:9', 'k') as cg: pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'gateway', 'classifiers', 'fastapi', 'starlette', 'pydantic', 'sqlalchemy', 'torch', "
        "'onnxruntime', 'PIL', 'cv2'})\n"
        "print('heavy', heavy)\n"
        "try:\n    import numpy\nexcept ImportError:\n    print('isolated')\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(site)],  # noqa: S603
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "heavy []" in out.stdout and "isolated" in out.stdout, out.stdout


@pytest.mark.parametrize("name", ["ConsentgateClient", "AsyncConsentgateClient", "PolicyDenied", "Decision"])
def test_gateway_client_reexports_the_package(name: str) -> None:
    import consentgate_client
    import gateway.client

    assert getattr(gateway.client, name) is getattr(consentgate_client, name)
