"""dlib's face-recognition ResNet run by a faster engine (#21.3): the weights file is parsed into the
exact network dlib runs, every engine gives dlib's own descriptor (cosine >= 0.9999, max abs difference
<= 1e-5) on the packaged portraits, generated crops and arbitrary chips, the adapter's default path uses
it with the same model identity, and every way it can go wrong falls back to dlib or fails closed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from classifiers import dlib_resnet
from classifiers.base import ModelError
from classifiers.dlib_resnet import CHIP_PADDING, CHIP_SIZE, EMBED_ENGINES, DlibResnet, read_dlib_resnet
from classifiers.face_dlib import MMOD, PREDICTOR, RESNET, DlibFaceAnalyzer, dlib_models_dir
from tests.support import faces

MIN_COSINE = 0.9999
MAX_ABS = 1e-5


@pytest.fixture(scope="module")
def net() -> DlibResnet:
    return read_dlib_resnet(dlib_models_dir() / RESNET)


@pytest.fixture(scope="module")
def dlib_models() -> tuple[object, object, object]:
    import dlib

    folder = dlib_models_dir()
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(folder / PREDICTOR)),
            dlib.face_recognition_model_v1(str(folder / RESNET)))


@pytest.fixture(scope="module")
def chips(dlib_models: tuple[object, ...]) -> dict[str, np.ndarray]:
    """Aligned 150×150 chips as dlib cuts them: the two packaged portraits, generated crops of them
    (small, rotated, mirrored, pasted on packaged pictures and JPEG-compressed), and two chips with
    no face (a crop of coffee, seeded noise)."""
    import cv2
    import dlib

    detector, predictor, _ = dlib_models
    out: dict[str, np.ndarray] = {}

    def add(name: str, image: np.ndarray) -> None:
        rects = detector(image, 1)  # type: ignore[operator]
        assert rects, f"no face in {name}"
        shape = predictor(image, rects[0])  # type: ignore[operator]
        out[name] = np.asarray(dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING))

    add("astronaut", faces.original("astronaut"))
    add("hopper", faces.original("hopper"))
    crops = (("astronaut", 64, 20, False), ("hopper", 96, -25, True), ("astronaut", 160, 0, True))
    for source, px, angle, mirror in crops:
        image = faces.canvas("chelsea", 512)
        faces.paste(image, source, px, 180, 150, angle=angle, mirror=mirror)
        ok, jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert ok
        add(f"{source}-{px}px-{angle}deg", np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]))
    out["coffee"] = np.ascontiguousarray(faces.original("coffee")[100:250, 200:350])
    out["noise"] = np.random.default_rng(21).integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    return out


def test_the_packaged_weights_parse_into_dlibs_face_network(net: DlibResnet) -> None:
    assert net.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert net.stem.weight.shape == (32, 3, 7, 7) and (net.stem.stride, net.stem.padding) == (2, 0)
    widths = [b.second.weight.shape[0] for b in net.blocks]
    assert widths == [32] * 3 + [64] * 4 + [128] * 3 + [256] * 3 + [256]
    assert [i for i, b in enumerate(net.blocks) if b.down] == [3, 7, 10, 13]
    assert net.fc.shape == (256, 128)
    params = net.stem.weight.size + sum(b.first.weight.size + b.second.weight.size for b in net.blocks) + net.fc.size
    assert 5_500_000 < params < 5_700_000  # the .dat is ~22.5 MB of float32


@pytest.mark.parametrize("name", [PREDICTOR, MMOD])
def test_another_dlib_file_is_refused(name: str) -> None:
    with pytest.raises(ModelError):
        read_dlib_resnet(dlib_models_dir() / name)


def test_a_truncated_or_altered_weights_file_is_refused(tmp_path: Path) -> None:
    data = (dlib_models_dir() / RESNET).read_bytes()
    for name, content in (("cut.dat", data[: len(data) // 2]), ("empty.dat", b""), ("header.dat", data[:300])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError):
            read_dlib_resnet(tmp_path / name)
    with pytest.raises(ModelError):
        read_dlib_resnet(tmp_path / "missing.dat")
    at = data.index(b"max_pool_2")  # the stem's pooling, renamed: no longer the known network
    (tmp_path / "renamed.dat").write_bytes(data[:at] + b"avg_pool_2" + data[at + 10:])
    with pytest.raises(ModelError, match="layers"):
        read_dlib_resnet(tmp_path / "renamed.dat")


def test_the_onnx_graph_written_without_the_onnx_package_is_valid_onnx(net: DlibResnet) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(dlib_resnet.onnx_model(net))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["chips"]
    assert [o.name for o in model.graph.output] == ["descriptors"]


@pytest.mark.parametrize("engine_name", sorted(EMBED_ENGINES))
def test_every_engine_gives_dlibs_descriptor(
        engine_name: str, net: DlibResnet, dlib_models: tuple[object, ...], chips: dict[str, np.ndarray]) -> None:
    resnet = dlib_models[2]
    engine = EMBED_ENGINES[engine_name](net, 1)
    names = sorted(chips)
    got = engine(np.stack([chips[n] for n in names]))  # one batch: batching must not change a descriptor
    assert got.shape == (len(names), 128) and got.dtype == np.float32
    for i, name in enumerate(names):
        want = np.asarray(resnet.compute_face_descriptor(chips[name]), dtype=np.float64)  # type: ignore[attr-defined]
        diff = float(np.abs(got[i] - want).max())
        cosine = float(got[i] @ want / (np.linalg.norm(got[i]) * np.linalg.norm(want)))
        print(f"{engine_name} {name}: max |diff| {diff:.2e}, cosine {cosine:.8f}")
        assert diff <= MAX_ABS, name
        assert cosine >= MIN_COSINE, name
    single = engine(chips["hopper"][None])[0]
    assert float(np.abs(single - got[names.index("hopper")]).max()) <= MAX_ABS


def test_an_engine_refuses_what_is_not_a_batch_of_chips(net: DlibResnet) -> None:
    engine = EMBED_ENGINES["onnxruntime"](net, 1)
    with pytest.raises(ModelError):
        engine(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ModelError):
        engine(np.zeros((1, 112, 112, 3), np.uint8))
    assert engine(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


@pytest.fixture(scope="module")
def analyzers() -> tuple[DlibFaceAnalyzer, DlibFaceAnalyzer]:
    return DlibFaceAnalyzer(), DlibFaceAnalyzer({"embed_engine": "dlib"})


def test_the_adapter_embeds_with_the_engine_and_keeps_dlibs_identity(
        analyzers: tuple[DlibFaceAnalyzer, DlibFaceAnalyzer]) -> None:
    new, old = analyzers
    assert (new.embed_engine, old.embed_engine) == ("onnxruntime", "dlib")
    assert new.info == old.info  # same name and model_version: enrolled templates stay valid
    image = faces.canvas("coffee", 900, 500)  # two faces: one batch of two chips
    faces.paste(image, "astronaut", 120, 100, 150)
    faces.paste(image, "hopper", 140, 600, 120)
    got, want = new.analyze(image), old.analyze(image)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want, strict=True):
        assert a.bbox == b.bbox and a.landmarks == b.landmarks
        assert a.embedding is not None and b.embedding is not None
        assert float(a.embedding @ b.embedding) >= MIN_COSINE
    assert float(got[0].embedding @ got[1].embedding) < 0.9  # type: ignore[operator]  # two people stay two
    two_stage = new.embed(image, new.detect(image))
    cosines = [float(a.embedding @ b.embedding) for a, b in zip(two_stage, want, strict=True)]  # type: ignore[operator]
    assert len(cosines) == 2 and min(cosines) >= MIN_COSINE


def test_concurrent_calls_give_the_serial_descriptors(analyzers: tuple[DlibFaceAnalyzer, DlibFaceAnalyzer]) -> None:
    """The engine runs outside the adapter's lock: calls from several threads must not mix faces up."""
    from concurrent.futures import ThreadPoolExecutor

    new = analyzers[0]
    images = [faces.original("astronaut"), faces.original("hopper")] * 3
    serial = [new.analyze(img)[0].embedding for img in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = [found[0].embedding for found in pool.map(new.analyze, images)]
    for a, b in zip(serial, parallel, strict=True):
        assert a is not None and b is not None and float(np.abs(a - b).max()) <= MAX_ABS
    assert float(serial[0] @ serial[1]) < 0.9  # type: ignore[operator]  # astronaut and Hopper stay apart


def test_faces_beyond_one_batch_keep_their_own_descriptors(
        monkeypatch: pytest.MonkeyPatch, analyzers: tuple[DlibFaceAnalyzer, DlibFaceAnalyzer]) -> None:
    from classifiers import face_dlib

    new = analyzers[0]
    image = faces.canvas("coffee", 900, 500)
    faces.paste(image, "astronaut", 120, 100, 150)
    faces.paste(image, "hopper", 140, 600, 120)
    whole = new.analyze(image)
    monkeypatch.setattr(face_dlib, "EMBED_BATCH", 1)
    split = new.analyze(image)
    assert len(whole) == len(split) == 2
    for a, b in zip(whole, split, strict=True):
        assert a.embedding is not None and b.embedding is not None
        assert float(np.abs(a.embedding - b.embedding).max()) <= MAX_ABS


def _broken(*_: object) -> object:
    raise ModelError("engine unavailable")


def _wrong(*_: object) -> object:
    return lambda chips: np.ones((len(chips), 128), np.float32)


@pytest.mark.parametrize("factory", [_broken, _wrong])
def test_an_engine_that_fails_or_disagrees_leaves_dlibs_path_under_auto_and_fails_when_named(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, factory: object) -> None:
    monkeypatch.setitem(EMBED_ENGINES, "onnxruntime", factory)
    # a server started by an earlier test (uvicorn's dictConfig) may have disabled existing loggers
    monkeypatch.setattr(logging.getLogger("classifiers.face_dlib"), "disabled", False)
    with caplog.at_level("WARNING", logger="classifiers.face_dlib"):
        auto = DlibFaceAnalyzer({"embed_engine": "auto", "min_face_px": 0})
    assert auto.embed_engine == "dlib"
    assert "embed engine 'onnxruntime' not used" in caplog.text  # the operator can see the slower path
    found = auto.analyze(faces.original("astronaut"))
    assert len(found) == 1 and found[0].embedding is not None
    with pytest.raises(ModelError):
        DlibFaceAnalyzer({"embed_engine": "onnxruntime"})


def test_an_engine_error_at_run_time_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    model = DlibFaceAnalyzer({"min_face_px": 0})
    image = faces.original("astronaut")
    detected = model.detect(image)

    def fail(chips: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime: out of memory")

    monkeypatch.setattr(model, "_engine", fail)
    with pytest.raises(ModelError, match="embed engine"):
        model.embed(image, detected)
    with pytest.raises(ModelError, match="embed engine"):
        model.analyze(image)


def test_jitter_and_an_unknown_engine(analyzers: tuple[DlibFaceAnalyzer, DlibFaceAnalyzer]) -> None:
    assert DlibFaceAnalyzer({"num_jitters": 2, "min_face_px": 0}).embed_engine == "dlib"  # dlib's random jitter
    with pytest.raises(ModelError, match="embed_engine"):
        DlibFaceAnalyzer({"embed_engine": "tensorrt"})
