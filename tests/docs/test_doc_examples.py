"""Docs that are tested (#22.7): the shell examples of the README's quick start and the curl examples
of docs/api.md are extracted from the Markdown and run, as written, against a live gateway
(`consentgate serve` in a subprocess, real models, the repo's policies) — so a doc that writes a 403
body into `released.jpg`, or a curl line that no longer works, fails here. Only the host and port are
changed (to a free port) and the files the examples name are put in the working directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    start = markdown.index(heading + "\n")
    nxt = re.compile(rf"^{re.escape(level)} ", re.M).search(markdown, start + len(heading) + 1)
    return markdown[start:nxt.start() if nxt else len(markdown)]


def shell_blocks(markdown: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(markdown) if "curl" in m.group(1)]


def test_the_extractor_finds_the_examples() -> None:
    readme = section((REPO / "README.md").read_text(), "## Quick start")
    blocks = shell_blocks(readme)
    assert len(blocks) == 1 and sum(line.startswith("curl ") for line in blocks[0].splitlines()) == 3
    assert "--fail-with-body" in blocks[0]  # the example that writes a file must not write a 403 body silently
    assert len(shell_blocks((REPO / "docs" / "api.md").read_text())) >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.fail("the doc examples need curl and jq (scripts/install.sh installs them)")
    work = tmp_path_factory.mktemp("docs")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONSENTGATE_DATA_DIR": str(work / "data"),
           "CONSENTGATE_POLICIES": str(REPO / "policies")}
    env.pop("CONSENTGATE_DATABASE_URL", None)
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", "from gateway.cli import main; main()", "serve", "--host", "127.0.0.1",
         "--port", str(port)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the gateway did not become ready:\n" + (work / "serve.log").read_text()[-3000:])
            time.sleep(1)
        yield work, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _images(work: Path, astronaut: np.ndarray, coffee: np.ndarray, chelsea: np.ndarray) -> None:
    Image.fromarray(astronaut).save(work / "photo.jpg", quality=90)
    Image.fromarray(coffee).save(work / "render.jpg", quality=90)
    Image.fromarray(chelsea).save(work / "reference.jpg", quality=90)


def _run(block: str, work: Path, port: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + block.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,  # noqa: S603, S607
                          text=True, timeout=300)


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(live: tuple[Path, int], astronaut: np.ndarray, coffee: np.ndarray,
                                           chelsea: np.ndarray) -> None:
    work, port = live
    _images(work, astronaut, coffee, chelsea)
    (block,) = shell_blocks(section((REPO / "README.md").read_text(), "## Quick start"))
    done = _run(block, work, port, dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] in ('"allow"', '"deny"', '"review"')  # `jq .decision` of the check
    assert any(line.lower().startswith("x-decision: allow") for line in lines)  # the release's headers
    assert (work / "released.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG, not an error body
    verify = json.loads(done.stdout[done.stdout.index("{"):])
    assert verify["c2pa"]["state"] == "Trusted" and verify["decisions"][0]["decision"] == "allow"


@pytest.mark.slow
def test_the_release_example_fails_closed(live: tuple[Path, int], coffee: np.ndarray) -> None:
    """The README's release line on a request the gateway refuses (a use no policy defines): curl
    exits non-zero and no `released.jpg` holding a JSON error is left behind."""
    work, port = live
    refused = work / "refused"
    refused.mkdir()
    shutil.copytree(work / "data", refused / "data", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.db*"))
    Image.fromarray(coffee).save(refused / "render.jpg", quality=90)
    (block,) = shell_blocks(section((REPO / "README.md").read_text(), "## Quick start"))
    release = "\n".join(line for line in block.split("\n\n") if "/v1/release" in line or line.startswith("KEY="))
    release = release.replace('"use":"txt2img"', '"use":"not_a_use"')
    done = _run(release, refused, port, dict(os.environ))
    assert done.returncode != 0
    assert '"policy_denied"' in done.stdout and not (refused / "released.jpg").exists()


@pytest.mark.slow
def test_api_md_curl_examples_run(live: tuple[Path, int], astronaut: np.ndarray, coffee: np.ndarray,
                                  chelsea: np.ndarray) -> None:
    work, port = live
    _images(work, astronaut, coffee, chelsea)
    key = next(line.split()[1] for line in (work / "data" / "first-run-keys.txt").read_text().splitlines()
               if line.startswith("generator"))
    env = {**os.environ, "CG": f"http://127.0.0.1:{port}", "KEY": key}
    blocks = shell_blocks((REPO / "docs" / "api.md").read_text())
    for block in blocks:
        done = _run(block, work, port, env)
        assert done.returncode == 0, block + "\n" + done.stdout + done.stderr
        assert '"error"' not in done.stdout, block + "\n" + done.stdout
    first = json.loads(_run(blocks[0], work, port, env).stdout)
    assert first["stage"] == "input" and first["use"] == "img2img" and first["decision"] in ("allow", "deny", "review")
