"""Why: `consentgate serve --workers N` used to be silently forced to one process. It now runs N
uvicorn worker processes, each building its own gateway from the environment; they share the data
dir and the audit log as replicas do, and the log verifies after both have appended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from classifiers.rayserve.cluster import descendants, free_port
from tests.api.conftest import png

POLICY = """
name: workers
models:
  fake: {adapter: fake}
consent:
  face_model: {adapter: fake}
  match_threshold: 0.9
uses:
  txt2img:
    input: {}
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8}}
      faces: {unmatched: allow, without_consent: deny}
"""


@pytest.mark.slow
def test_serve_runs_n_worker_processes_that_share_one_audit_log(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(POLICY)
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    env["CONSENTGATE_LOG_FORMAT"] = "json"
    cli = [sys.executable, "-c", "from gateway.cli import main; main()"]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--data-dir", str(data),  # noqa: S603
                                 "--policies", str(policies), "--workers", "2"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        workers = [p for p in descendants(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, f"worker processes: {workers}"
        key = dict(line.split(" ", 1) for line in (data / "first-run-keys.txt").read_text().splitlines())["generator"]
        image = png(np.full((64, 64, 3), (230, 20, 20), np.uint8))
        indexes = []
        with httpx.Client(timeout=60) as http:
            for _ in range(8):
                resp = http.post(url + "/v1/check", headers={"Authorization": f"Bearer {key}"},
                                 data={"request": json.dumps({"stage": "output", "use": "txt2img"})},
                                 files=[("media", ("r.png", image, "image/png"))])
                assert resp.status_code == 200 and resp.json()["decision"] == "deny"
                indexes.append(resp.json()["audit"]["index"])
        assert len(set(indexes)) == 8
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request" and line.get("route") == "/v1/check"]
    assert len(requests) == 8 and all(r["verdict"] == "deny" and r["decision_id"] for r in requests)
    assert all("models" in r["stages_ms"] and "audit" in r["stages_ms"] for r in requests)
    verify = subprocess.run([*cli, "audit", "verify", "--data-dir", str(data)], env=env,  # noqa: S603
                            capture_output=True, text=True, timeout=300, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_bad_model_backend_setting_is_a_clear_cli_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    cli = [sys.executable, "-c", "from gateway.cli import main; main()"]
    for extra, needle in (({"CONSENTGATE_MODEL_BACKEND": "gpu"}, "must be inprocess or ray"),
                          ({"CONSENTGATE_MODEL_BACKEND": "ray"}, "needs CONSENTGATE_RAY_ADDRESS")):
        done = subprocess.run([*cli, "init", "--data-dir", str(tmp_path / "d")], env={**env, **extra},  # noqa: S603
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1 and needle in done.stderr and "Traceback" not in done.stderr
