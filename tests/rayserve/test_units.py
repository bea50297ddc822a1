"""Why: the pieces of the Ray backend that need no cluster — the wire frame, the workers file, the
client's retry rule and the registry it builds — are checked here in milliseconds, with a mock
transport standing in for the Serve proxy (the cluster tests beside this file run the real one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from classifiers import DetectedFace, ModelError, builtin_registry
from classifiers.rayserve import ConfigError, RemoteModelError, ServeClient, parse_config, remote_registry
from classifiers.rayserve.config import load_config
from classifiers.rayserve.wire import decode, encode, faces_from_wire, faces_to_wire

ROOT = Path(__file__).resolve().parents[2]

# -- wire -------------------------------------------------------------------------------------------


def test_frame_round_trips_arrays_bit_exact_with_meta() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(61, 97, 3), dtype=np.uint8)
    emb = rng.standard_normal((3, 128)).astype(np.float32)
    meta, arrays = decode(encode({"model": "nudenet", "n": [1, 2.5]}, [image, emb]))
    assert meta == {"model": "nudenet", "n": [1, 2.5]}
    assert arrays[0].dtype == np.uint8 and np.array_equal(arrays[0], image)
    assert arrays[1].dtype == np.float32 and np.array_equal(arrays[1], emb)


def test_frame_carries_raw_bytes_not_json_numbers() -> None:
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    body = encode({}, [image])
    assert len(body) < image.nbytes + 256  # the array's bytes plus small headers


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:3],                      # shorter than the length prefix
        lambda b: b"\xff\xff\xff\xff" + b[4:],  # header length out of range
        lambda b: b[:-10],                    # truncated array
        lambda b: b + b"x",                   # trailing bytes
        lambda b: b[:4] + b"{" * (len(b) - 4),  # header is not JSON
    ],
)
def test_malformed_frames_raise_model_error(mutate: Callable[[bytes], bytes]) -> None:
    body = encode({"model": "m"}, [np.ones((4, 4, 3), dtype=np.uint8)])
    with pytest.raises(ModelError):
        decode(mutate(body))


def test_object_arrays_cannot_be_sent_and_pickles_are_refused() -> None:
    with pytest.raises(ValueError):
        encode({}, [np.array([object()], dtype=object)])
    import io
    import struct

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    head = json.dumps({"meta": None, "arrays": 1}).encode()
    with pytest.raises(ModelError):
        decode(struct.pack(">I", len(head)) + head + buf.getvalue())


def test_faces_round_trip_with_and_without_embeddings() -> None:
    emb = np.arange(128, dtype=np.float32) / 100
    faces = [[DetectedFace((1, 2, 30, 40), 0.75, ((3.5, 4.25),), emb),
              DetectedFace((5, 6, 7, 8), 0.5)], []]
    meta, arrays = faces_to_wire(faces, 128)
    back = faces_from_wire(json.loads(json.dumps(meta)), arrays)
    assert [[f.bbox for f in fs] for fs in back] == [[(1, 2, 30, 40), (5, 6, 7, 8)], []]
    first = back[0][0]
    assert first.det_score == 0.75 and first.landmarks == ((3.5, 4.25),)
    assert first.embedding is not None and np.array_equal(first.embedding, emb)
    assert back[0][1].embedding is None


# -- workers file ----------------------------------------------------------------------------------


def test_shipped_workers_file_parses_and_becomes_serve_applications() -> None:
    cfg = load_config(ROOT / "deploy" / "ray" / "models.yaml", builtin_registry())
    apps = {a["name"]: a for a in cfg.applications()}
    assert set(apps) == {"nsfw", "face", "text", "voice"}
    face = apps["face"]
    assert face["route_prefix"] == "/face" and face["import_path"] == "classifiers.rayserve.worker:build"
    dep = face["args"]["deployment"]
    assert dep["num_replicas"] == 2 and dep["user_config"]["max_batch_size"] == 4
    assert dep["ray_actor_options"]["num_cpus"] == 0.5
    assert ("nsfw", "nudenet") in cfg.hosted() and ("face", "dlib") in cfg.hosted()
    assert ("voice", "resemblyzer") in cfg.hosted()


def test_gpu_and_autoscaling_settings_reach_the_deployment_options() -> None:
    cfg = parse_config({"families": {"nsfw": {
        "models": [{"adapter": "nudenet-torch", "options": {"device": "cuda", "batch_size": 64}}],
        "num_gpus": 0.5, "num_cpus": 2, "autoscaling": {"min_replicas": 1, "max_replicas": 4},
        "max_batch_size": 64, "batch_wait_timeout_s": 0.02}}}, builtin_registry())
    dep = cfg.families["nsfw"].deployment_options()
    assert dep["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert dep["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4} and "num_replicas" not in dep
    assert dep["user_config"] == {"max_batch_size": 64, "batch_wait_timeout_s": 0.02}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"families": {"voicex": {"models": [{"adapter": "x"}]}}}, "cannot run on Ray"),
        ({"families": {"nsfw": {"models": [{"adapter": "nope"}]}}}, "unknown nsfw adapter 'nope'"),
        ({"families": {"nsfw": {"models": [{"adapter": "fake"}], "replica": 2}}}, "unknown key(s) ['replica']"),
        ({"families": {"nsfw": {"models": [{"adapter": "fake"}], "replicas": 0}}}, "replicas must be >= 1"),
        ({"families": {"nsfw": {"models": [{"adapter": "fake"}], "max_batch_size": 2.5}}}, "must be an integer"),
        ({"families": {"nsfw": {"models": []}}}, "non-empty list"),
        ({"families": {"nsfw": {"models": [{"adapter": "fake"}, {"adapter": "fake"}]}}}, "listed twice"),
        ({"families": {"nsfw": {"models": [{"adapter": "fake"}], "replicas": 2,
                                "autoscaling": {"max_replicas": 3}}}}, "either replicas or autoscaling"),
        ({"family": {}}, "exactly one key"),
    ],
)
def test_invalid_workers_files_are_refused_naming_the_key(raw: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, builtin_registry())
    assert needle in str(info.value)


# -- client: retry rule and registry (mock Serve proxy) ----------------------------------------------

INFO = {"family": "nsfw", "max_batch_size": 2, "models": {
    "fake": {"name": "fake", "version": "fake-1", "options": {}, "labels": ["unsafe", "suggestive"]}}}


def _proxy(statuses: list[int], seen: list[str]) -> httpx.MockTransport:
    """Answers `info`, and classify calls with the next status of `statuses` (200 = scores)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/info"):
            return httpx.Response(200, json=INFO)
        status = statuses.pop(0)
        if status == 200:
            _meta, arrays = decode(request.content)
            return httpx.Response(200, content=encode([{"unsafe": 0.25, "suggestive": 0.5}] * len(arrays)))
        if status == -1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={"error": f"status {status}"})

    return httpx.MockTransport(handler)


def _client(statuses: list[int], seen: list[str], outcomes: list[str]) -> ServeClient:
    return ServeClient("http://serve.test", transport=_proxy(statuses, seen),
                       observer=lambda fam, op, s, outcome: outcomes.append(f"{fam}.{op}:{outcome}"))


IMG = np.zeros((8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("first", [500, 503, -1])
def test_a_failed_replica_call_is_retried_once(first: int) -> None:
    seen: list[str] = []
    outcomes: list[str] = []
    model = remote_registry(builtin_registry(), _client([first, 200], seen, outcomes), ["nsfw"]).nsfw("fake")
    assert model.classify([IMG]) == [{"unsafe": 0.25, "suggestive": 0.5}]
    assert seen.count("POST /nsfw/classify") == 2
    assert outcomes == ["nsfw.classify:retried"]


def test_a_second_failure_raises_naming_family_and_model() -> None:
    outcomes: list[str] = []
    model = remote_registry(builtin_registry(), _client([500, 502], [], outcomes), ["nsfw"]).nsfw("fake")
    with pytest.raises(RemoteModelError) as info:
        model.classify([IMG])
    assert "nsfw model 'fake'" in str(info.value) and "after one retry" in str(info.value)
    assert outcomes == ["nsfw.classify:failed"]


def test_a_model_error_is_not_retried() -> None:
    seen: list[str] = []
    model = remote_registry(builtin_registry(), _client([422], seen, []), ["nsfw"]).nsfw("fake")
    with pytest.raises(RemoteModelError, match="status 422"):
        model.classify([IMG])
    assert seen.count("POST /nsfw/classify") == 1


def test_large_calls_are_cut_into_batch_sized_chunks_in_order() -> None:
    seen: list[str] = []
    model = remote_registry(builtin_registry(), _client([200] * 3, seen, []), ["nsfw"]).nsfw("fake")
    assert len(model.classify([IMG] * 5)) == 5  # max_batch_size 2 -> 3 calls
    assert seen.count("POST /nsfw/classify") == 3


def test_registry_keeps_names_and_builds_other_families_in_process() -> None:
    seen: list[str] = []
    registry = remote_registry(builtin_registry(), _client([], seen, []), ["nsfw"])
    assert registry.names("nsfw") == builtin_registry().names("nsfw")
    face = registry.face("fake")
    assert type(face).__module__ == "classifiers.fake"  # face stays in-process here
    nsfw = registry.nsfw("fake")
    assert type(nsfw).__name__ == "RemoteNsfw" and nsfw.info.version == "fake-1"
    with pytest.raises(ModelError, match="not deployed on Ray Serve"):
        registry.nsfw("opennsfw")
    with pytest.raises(ModelError, match="the policy asks for options"):
        registry.nsfw("fake", {"mode": "x"})
    assert registry.nsfw("fake", {"threads": 4}).info.name == "fake"  # runtime knobs may differ


def test_unreachable_serve_fails_closed_and_reports_a_problem() -> None:
    from classifiers.rayserve.cluster import free_port

    client = ServeClient(f"http://127.0.0.1:{free_port()}", connect_timeout_s=0.5)
    problems = client.problems(["nsfw", "face"], timeout_s=0.5)
    assert len(problems) == 2 and all("unreachable" in p for p in problems)
    with pytest.raises(RemoteModelError, match="unreachable"):
        remote_registry(builtin_registry(), client, ["nsfw"]).nsfw("fake")
    with pytest.raises(RemoteModelError, match="connection failed"):
        client.call("nsfw", "classify", "fake", {}, [IMG])


def test_a_non_http_address_is_refused() -> None:
    with pytest.raises(ModelError, match="http"):
        ServeClient("127.0.0.1:6379")


def test_voice_clips_of_several_requests_share_one_embed_batch_and_a_bad_one_fails_alone() -> None:
    pytest.importorskip("ray.serve")
    from classifiers import fake_voice_samples
    from classifiers.rayserve.worker import FamilyModels, Item

    family = FamilyModels("voice", [{"adapter": "fake"}], 1.0)
    calls: list[int] = []
    adapter = family.adapters["fake"]
    inner = adapter.embed
    adapter.embed = lambda clips: calls.append(len(clips)) or inner(clips)  # count the model calls
    clips = [fake_voice_samples(9, 2.0), fake_voice_samples(40, 3.0)]
    out = family.run([Item("fake", "embed", c) for c in clips])
    assert calls == [2]  # both clips in one adapter call
    assert all(np.allclose(row, inner([c])[0]) for row, c in zip(out, clips, strict=True))
    calls.clear()
    mixed = family.run([Item("fake", "embed", clips[0]), Item("fake", "embed", np.zeros(0, np.float32))])
    assert np.allclose(mixed[0], out[0]) and isinstance(mixed[1], ModelError)
    assert calls == [2, 1, 1]  # the failed batch was rerun item by item
    (segments,) = family.run([Item("fake", "speech", clips[0])])
    assert segments and all(0 <= a < b <= 2.0 + 1e-6 for a, b in segments)


def test_nudenet_face_boxes_come_from_the_same_batched_pass() -> None:
    pytest.importorskip("ray.serve")
    import skimage.data

    from classifiers.rayserve.worker import FamilyModels, Item

    family = FamilyModels("nsfw", [{"adapter": "nudenet"}], 1.0)
    assert family.describe()["nudenet"]["with_faces"] is True
    image = np.ascontiguousarray(skimage.data.astronaut())
    (pair,) = family.run([Item("nudenet", "classify_faces", image)])
    scores, boxes = pair
    direct_scores, direct_boxes = family.adapters["nudenet"].classify_with_faces([image])
    assert scores == direct_scores[0] and len(boxes) == len(direct_boxes[0]) >= 1
    x0, y0, x1, y1 = boxes[0][0]
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]


# -- the local cluster's bookkeeping ------------------------------------------------------------------


def test_a_cluster_takes_distinct_ports() -> None:
    from classifiers.rayserve.cluster import LocalCluster, free_ports

    assert len(set(free_ports(50))) == 50
    cluster = LocalCluster(num_cpus=1)  # not started: only its ports are chosen
    try:
        assert len(set(cluster._ports)) == len(cluster._ports) == 10
        assert {cluster.gcs_port, cluster.serve_port} <= set(cluster._ports)
    finally:
        cluster.stop()


def test_process_roles_and_cpu_come_from_proc() -> None:
    import os
    import shutil
    import subprocess
    import time

    from classifiers.rayserve.cluster import process_cpu_seconds, process_role

    me = process_cpu_seconds(os.getpid())
    assert me is not None and me > 0
    assert process_role(os.getpid()).startswith("python")
    # a Serve replica's title as Ray sets it (argv[0])
    bash = shutil.which("bash") or "/bin/bash"
    with subprocess.Popen([bash, "-c", "exec -a 'ray::ServeReplica:face:face' sleep 30"]) as child:  # noqa: S603
        try:
            deadline = time.monotonic() + 10
            while process_role(child.pid) != "ServeReplica:face" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert process_role(child.pid) == "ServeReplica:face"
        finally:
            child.kill()
    assert process_cpu_seconds(2**22 + 12345) is None  # no such process


def test_a_head_that_timed_out_starting_is_started_once_more_on_fresh_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    from classifiers.rayserve.cluster import LocalCluster

    cluster = LocalCluster(num_cpus=1)
    tries: list[tuple[int, Path]] = []

    def start_once(timeout_s: float) -> LocalCluster:
        tries.append((cluster.gcs_port, cluster.temp_dir))
        if len(tries) == 1:
            raise ModelError("the local Ray head did not start:\nException: The current node timed out during startup.")
        return cluster

    monkeypatch.setattr(cluster, "_start_once", start_once)
    assert cluster.start() is cluster
    assert len(tries) == 2 and tries[0] != tries[1]
    cluster.stop()
    assert not tries[1][1].exists()
    tries[0][1].rmdir()  # the real first try stops itself (and removes its dir) before raising

    other = LocalCluster(num_cpus=1)
    monkeypatch.setattr(other, "_start_once", lambda timeout_s: (_ for _ in ()).throw(ModelError("bad flag")))
    with pytest.raises(ModelError, match="bad flag"):  # anything else is not retried
        other.start()
    other.stop()
