"""Secrets hygiene through a real deployment flow: `consentgate init`, then `consentgate serve` as a
subprocess on loopback with its output captured, then keys created over the API and check, release,
registry, provenance and audit calls (and a few failed ones). Afterwards no API key secret and no
private-key file content may appear in the server's stdout/stderr or in any file of the data dir
other than the key files and the databases — except the documented first-run printout of `init`
(to stderr) and data/first-run-keys.txt (0600), which must be exactly that. Every file under
data/keys is 0600. Also: CORS is off unless configured, and every response carries the security
headers."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from examples.upstream import free_port
from tests.api.conftest import TEST_POLICY, jpeg, png

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
PROMPT_MARKER = "zebra-lighthouse-7f3a91"  # prompt text must not reach the server's logs either
KEY_RE = re.compile(r"cg_[0-9a-f]+_[A-Za-z0-9_-]+")


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "consentgate"
    return (
        [str(script)] if script.exists() else [sys.executable, "-c", "from gateway.cli import main; main()"]
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    env["ORT_DISABLE_TELEMETRY"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Deployment:
    root: Path
    data: Path
    url: str
    init_stdout: str
    init_stderr: str
    server_out: Path
    server_err: Path
    secrets: dict[str, str] = field(default_factory=dict)  # label -> full API key


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, coffee: np.ndarray, astronaut: np.ndarray
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("secrets")
    data, policies = root / "data", root / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(TEST_POLICY)
    init = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [*_cli(), "init", "--data-dir", str(data), "--policies", str(policies)],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(),
        check=True,
    )
    port = free_port()
    out, err = root / "server.stdout", root / "server.stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(  # noqa: S603
            [
                *_cli(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data),
                "--policies",
                str(policies),
            ],
            stdout=fo,
            stderr=fe,
            env=_env(),
            start_new_session=True,
        )
    dep = Deployment(root, data, f"http://127.0.0.1:{port}", init.stdout, init.stderr, out, err)
    try:
        _wait_ready(dep.url, proc)
        _flow(dep, coffee, astronaut)
    except BaseException:
        proc.kill()
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    yield dep


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        assert proc.poll() is None, "consentgate serve exited during startup"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError("consentgate serve did not become ready")


def _first_run_keys(dep: Deployment) -> dict[str, str]:
    text = (dep.data / "first-run-keys.txt").read_text()
    return dict(line.split(" ", 1) for line in text.splitlines())


def _flow(dep: Deployment, coffee: np.ndarray, astronaut: np.ndarray) -> None:
    first = _first_run_keys(dep)
    admin, demo = first["admin"], first["generator"]
    dep.secrets.update({"first-run admin": admin, "first-run generator": demo})
    with httpx.Client(base_url=dep.url, timeout=120) as http:

        def auth(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        made = {}
        for label, tenant, role in (
            ("generator", "acme", "generator"),
            ("registrar", "operator", "registrar"),
            ("auditor", "operator", "auditor"),
            ("doomed", "acme", "generator"),
        ):
            resp = http.post("/v1/apikeys", headers=auth(admin), json={"tenant": tenant, "role": role})
            assert resp.status_code in (200, 201), resp.text
            made[label] = resp.json()
            dep.secrets[label] = made[label]["key"]
        listed = http.get("/v1/apikeys", headers=auth(admin))
        assert listed.status_code == 200
        for key in dep.secrets.values():
            assert key.split("_", 2)[2] not in listed.text  # listed, never shown again
        gen, reg, aud = dep.secrets["generator"], dep.secrets["registrar"], dep.secrets["auditor"]

        def check(key: str, image: bytes, use: str = "img2img") -> httpx.Response:
            request = {"stage": "input", "use": use, "prompt": f"a photo, {PROMPT_MARKER}", "end_user": "u-1"}
            return http.post(
                "/v1/check",
                headers=auth(key),
                data={"request": json.dumps(request)},
                files=[("media", ("m.png", image, "image/png"))],
            )

        assert check(gen, png(coffee)).status_code == 200
        assert check(demo, png(coffee)).status_code == 200
        released = http.post(
            "/v1/release",
            headers=auth(gen),
            data={"request": json.dumps({"use": "txt2img"})},
            files=[("media", ("r.png", png(coffee), "image/png"))],
        )
        assert released.status_code == 200, released.text
        subject = http.post("/v1/subjects", headers=auth(reg), json={"display_name": "Secret Test Person"})
        assert subject.status_code == 201
        sid = subject.json()["id"]
        enrol = http.post(
            f"/v1/subjects/{sid}/faces",
            headers=auth(reg),
            data={"notice_version": "v1"},
            files=[("media", ("a.jpg", jpeg(astronaut), "image/jpeg"))],
        )
        assert enrol.status_code == 201, enrol.text
        grant = http.post(
            f"/v1/subjects/{sid}/grants",
            headers=auth(reg),
            json={"grantee_tenant": "acme", "uses": ["img2img"]},
        )
        assert grant.status_code == 201
        assert check(gen, jpeg(astronaut)).status_code == 200
        assert (
            http.post(
                "/v1/provenance/verify",
                headers=auth(aud),
                files=[("media", ("r.png", released.content, "image/png"))],
            ).status_code
            == 200
        )
        assert http.get("/v1/audit/entries", headers=auth(aud)).status_code == 200
        assert http.get("/v1/audit/checkpoint", headers=auth(aud)).status_code in (200, 404)
        assert http.get(f"/v1/subjects/{sid}/uses", headers=auth(reg)).status_code == 200
        # Failures must not echo or log the presented secret either.
        assert http.get("/v1/audit/entries", headers=auth(gen)).status_code == 403
        wrong = gen[:-4] + "AAAA"
        dep.secrets["wrong (never issued)"] = wrong
        assert http.get("/v1/audit/entries", headers=auth(wrong)).status_code == 401
        doomed = made["doomed"]
        assert http.delete(f"/v1/apikeys/{doomed['id']}", headers=auth(admin)).status_code == 200
        assert check(doomed["key"], png(coffee)).status_code == 401
        assert http.post("/v1/check", headers=auth(gen), data={"request": "{not json"}).status_code == 400


def _key_material(data: Path) -> dict[str, bytes]:
    """label -> needle, for every private-key file under data/keys: the raw bytes, and where the file
    is PEM, each base64 line of its body; where binary, its hex and base64 forms."""
    needles: dict[str, bytes] = {}
    for path in sorted((data / "keys").rglob("*")):
        if not path.is_file() or path.suffix == ".pem":  # certificates are public
            continue
        raw = path.read_bytes()
        rel = path.relative_to(data).as_posix()
        if b"-----BEGIN" in raw:
            body = [ln for ln in raw.splitlines() if ln and not ln.startswith(b"-----")]
            for i, line in enumerate(body):
                if len(line) >= 16:
                    needles[f"{rel} (PEM line {i})"] = line
        else:
            needles[f"{rel} (raw)"] = raw
            needles[f"{rel} (hex)"] = raw.hex().encode()
            needles[f"{rel} (base64)"] = base64.b64encode(raw).rstrip(b"=")
            needles[f"{rel} (base64url)"] = base64.urlsafe_b64encode(raw).rstrip(b"=")
    assert needles, "no key files found"
    return needles


def _searched_files(dep: Deployment) -> dict[str, bytes]:
    files = {
        "server stdout": dep.server_out.read_bytes(),
        "server stderr": dep.server_err.read_bytes(),
        "init stdout": dep.init_stdout.encode(),
    }
    for path in sorted(dep.data.rglob("*")):
        rel = path.relative_to(dep.data).as_posix()
        if not path.is_file() or rel.startswith("keys/") or rel == "first-run-keys.txt":
            continue
        if re.search(r"\.db(-wal|-shm|-journal)?$", rel):
            continue
        files[f"data/{rel}"] = path.read_bytes()
    return files


@pytest.mark.timeout(300)
def test_no_secret_in_logs_or_data_files(deployment: Deployment) -> None:
    haystacks = _searched_files(deployment)
    assert deployment.server_err.read_bytes() or deployment.server_out.read_bytes(), (
        "the server logged nothing?"
    )
    needles = {f"API key {label}": key.encode() for label, key in deployment.secrets.items()}
    needles |= {
        f"API key secret {label}": key.split("_", 2)[2].encode() for label, key in deployment.secrets.items()
    }
    needles |= _key_material(deployment.data)
    needles[f"prompt text {PROMPT_MARKER}"] = PROMPT_MARKER.encode()
    found = [
        f"{needle} in {where}"
        for where, hay in haystacks.items()
        for needle, value in needles.items()
        if value in hay
    ]
    assert not found, "\n".join(found)
    # Nothing that even looks like an API key in the server's output.
    for where in ("server stdout", "server stderr"):
        assert not KEY_RE.search(haystacks[where].decode("utf-8", "replace")), where


def test_first_run_keys_are_printed_once_to_stderr_and_kept_0600(deployment: Deployment) -> None:
    path = deployment.data / "first-run-keys.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = _first_run_keys(deployment)
    assert set(keys) == {"admin", "generator"} and all(KEY_RE.fullmatch(k) for k in keys.values())
    assert path.read_text() == f"admin {keys['admin']}\ngenerator {keys['generator']}\n"
    printed = KEY_RE.findall(deployment.init_stderr)
    assert printed == [keys["admin"], keys["generator"]]  # printed once each, to stderr
    assert "first-run-keys.txt" in deployment.init_stderr
    assert not KEY_RE.search(deployment.init_stdout)


def test_key_files_are_0600_and_their_folders_0700(deployment: Deployment) -> None:
    """Every private key (and every other file) under data/keys is 0600. The two public certificates
    (c2pa-root.pem, c2pa-signing-chain.pem) may be world-readable: they are public, and they sit in
    a 0700 folder; they must not be writable by anyone else."""
    keys = deployment.data / "keys"
    files = [p for p in keys.rglob("*") if p.is_file()]
    assert len(files) >= 4, files
    private = [p for p in files if p.suffix != ".pem" or b"PRIVATE KEY" in p.read_bytes()]
    assert {"audit_ed25519.key", "kek.key", "c2pa-signing.key", "c2pa-root.key"} <= {p.name for p in private}
    bad = [f"{p.relative_to(deployment.data)}: {oct(stat.S_IMODE(p.stat().st_mode))}" for p in private
           if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert not bad, bad
    for cert in set(files) - set(private):
        assert not stat.S_IMODE(cert.stat().st_mode) & 0o022, cert
    for folder in (deployment.data, keys):  # what shields everything below them
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for folder in (p for p in keys.rglob("*") if p.is_dir()):  # keys/c2pa is 0755 inside the 0700 keys/
        assert not stat.S_IMODE(folder.stat().st_mode) & 0o022, folder
    for db in deployment.data.glob("*.db*"):  # with -wal and -shm
        assert stat.S_IMODE(db.stat().st_mode) == 0o600, db


# -- CORS and security headers ---------------------------------------------------------------------


def _app_client(tmp_path: Path, **settings: object):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from tests.api.conftest import make_settings

    return TestClient(create_app(make_settings(tmp_path, **settings)))


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    with _app_client(tmp_path) as client:
        plain = client.get("/healthz", headers={"Origin": "https://evil.example"})
        preflight = client.options(
            "/v1/check", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
    assert plain.status_code == 200
    for resp in (plain, preflight):
        assert not any(h.lower().startswith("access-control-") for h in resp.headers), dict(resp.headers)


def test_cors_is_on_for_configured_origins_only(tmp_path: Path) -> None:
    with _app_client(tmp_path, cors_origins=("https://app.example",)) as client:
        ok = client.get("/healthz", headers={"Origin": "https://app.example"})
        preflight = client.options(
            "/v1/check",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert ok.headers.get("access-control-allow-origin") == "https://app.example"
    assert preflight.status_code == 200
    assert preflight.headers.get("access-control-allow-origin") == "https://app.example"
    assert "POST" in preflight.headers.get("access-control-allow-methods", "")
    assert "access-control-allow-origin" not in other.headers
    assert other.headers.get("access-control-allow-credentials") is None


def test_security_headers_on_every_kind_of_response(tmp_path: Path, coffee: np.ndarray) -> None:
    with _app_client(tmp_path) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        key = gw.apikeys.create("acme", "generator")[1]
        auth = {"Authorization": f"Bearer {key}"}
        release = client.post(
            "/v1/release",
            headers=auth,
            data={"request": json.dumps({"use": "txt2img"})},
            files=[("media", ("r.png", png(coffee), "image/png"))],
        )
        assert release.status_code == 200 and release.content.startswith(b"\x89PNG")
        responses = {
            "healthz": client.get("/healthz"),
            "metrics": client.get("/metrics"),
            "check (200)": client.post("/v1/check", headers=auth,
                                       data={"request": '{"stage": "input", "use": "txt2img"}'}),
            "release (image)": release,
            "401": client.get("/v1/routes"),
            "403": client.get("/v1/audit/entries", headers=auth),
            "404": client.get("/nope"),
            "405": client.delete("/healthz"),
            "413": client.post("/v1/check", headers={**auth, "Content-Length": str(10**12)}, content=b""),
            "422": client.post("/v1/check", headers=auth, data={}),
        }
    for name, resp in responses.items():
        for header, value in SECURITY_HEADERS.items():
            assert resp.headers.get(header) == value, (name, header, dict(resp.headers))
        csp = resp.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, (name, csp)
