"""Every ONNX Runtime session the gateway builds takes its memory-arena setting from one place
(classifiers/_common.py `ort_session_options`, CONSENTGATE_ORT_ARENA, issue #21.4): the arena off by
default, since with it on the sessions' arenas grew in steps under concurrent calls of varying batch
(bench/ort_arena.py, docs/deploy.md); an unknown mode fails loudly."""

from __future__ import annotations

import pytest

from classifiers._common import OnnxSessions, ort_arena_mode, package_file
from classifiers.base import ModelError
from classifiers.dlib_resnet import OnnxResnetEngine, read_dlib_resnet
from classifiers.face_dlib import RESNET, dlib_models_dir


@pytest.mark.parametrize(("mode", "arena", "pattern"), [(None, False, True), ("on", True, True),
                                                        ("off", False, True), ("nopattern", True, False)])
def test_every_session_gets_the_arena_mode(monkeypatch: pytest.MonkeyPatch, mode: str | None, arena: bool,
                                           pattern: bool) -> None:
    if mode is None:
        monkeypatch.delenv("CONSENTGATE_ORT_ARENA", raising=False)
    else:
        monkeypatch.setenv("CONSENTGATE_ORT_ARENA", mode)
    nude = OnnxSessions(package_file("nudenet", "320n.onnx"), 1)
    engine = OnnxResnetEngine(read_dlib_resnet(dlib_models_dir() / RESNET), 1)
    for session in (nude.session(), engine._session):
        opts = session.get_session_options()
        assert opts.enable_cpu_mem_arena is arena
        assert opts.enable_mem_pattern is pattern


def test_an_unknown_mode_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_ORT_ARENA", "maybe")
    with pytest.raises(ModelError):
        ort_arena_mode()


def test_shrink_mode_sets_its_run_options_once_per_session_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_ORT_ARENA", "shrink")
    nude = OnnxSessions(package_file("nudenet", "320n.onnx"), 1)
    monkeypatch.setenv("CONSENTGATE_ORT_ARENA", "off")  # a later change does not split session and run options
    assert nude._run_options is not None and nude.session().get_session_options().enable_cpu_mem_arena
    assert OnnxSessions(package_file("nudenet", "320n.onnx"), 1)._run_options is None
