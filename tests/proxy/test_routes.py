"""The routes file: schema, `file:line: field.path` errors, keep-last-good reload; and the
http-json request templates and response paths (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.upstream import RouteManager, RoutesError, load_routes
from gateway.upstream.template import TemplateError, extract, render

GOOD = """\
default: demo
routes:
  demo:
    kind: openai-images
    url: http://127.0.0.1:9090/
    use: txt2img
    model: {name: demo-upstream, version: "1"}
    timeout_s: 60
  json:
    kind: http-json
    url: https://models.example/api
    use: txt2img
    model: {name: j}
    http_json: {path: /gen, request: {q: "{prompt}"}, response_path: images}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def test_repository_routes_file_is_valid() -> None:
    table = load_routes(Path(__file__).resolve().parents[2] / "policies" / "routes.yaml")
    demo = table.routes["demo"]
    assert demo.kind == "openai-images" and demo.url == "http://127.0.0.1:9090"
    assert demo.software_agent() == {"name": "demo-upstream", "version": "1"}
    assert table.resolve(None) == ("demo", demo)


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    table = load_routes(write(tmp_path, GOOD))
    demo = table.routes["demo"]
    assert demo.url == "http://127.0.0.1:9090"  # trailing slash dropped
    assert (demo.edit_use, demo.retries, demo.max_concurrency) == ("img2img", 2, 4)
    assert table.routes["json"].takes_edits is False and demo.takes_edits is True
    assert table.resolve("json")[0] == "json" and table.resolve("nope") is None  # type: ignore[index]
    assert table.spec.limits.per_key is not None and table.digest


def test_missing_file_is_an_empty_table(tmp_path: Path) -> None:
    table = load_routes(tmp_path / "routes.yaml")
    assert table.routes == {} and table.digest is None and table.resolve(None) is None


@pytest.mark.parametrize(
    "bad,line,where",
    [
        ("    kind: openai-images", "    kind: dalle", "routes.demo.kind"),
        ("    url: http://127.0.0.1:9090/", "    url: ftp://127.0.0.1/", "routes.demo.url"),
        ("    timeout_s: 60", "    timeout_s: -1", "routes.demo.timeout_s"),
        ("    timeout_s: 60", "    timeout: 60", "routes.demo.timeout"),
        (
            "    use: txt2img\n    model: {name: demo",
            "    use: 'txt 2 img'\n    model: {name: demo",
            "routes.demo.use",
        ),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, bad: str, line: str, where: str) -> None:
    text = GOOD.replace(bad, line, 1)
    assert text != GOOD
    path = write(tmp_path, text)
    with pytest.raises(RoutesError) as caught:
        load_routes(path)
    [error] = [e for e in caught.value.errors if where in e]
    expected_line = text.splitlines().index(line.splitlines()[0]) + 1
    assert error.startswith(f"{path}:{expected_line}: {where}")


def test_kind_specific_and_cross_field_rules(tmp_path: Path) -> None:
    no_section = GOOD.replace(
        '    http_json: {path: /gen, request: {q: "{prompt}"}, response_path: images}\n', ""
    )
    with pytest.raises(RoutesError, match="http_json"):
        load_routes(write(tmp_path, no_section))
    with pytest.raises(RoutesError, match="default route 'other'"):
        load_routes(write(tmp_path, GOOD.replace("default: demo", "default: other")))
    with pytest.raises(RoutesError, match="route names"):
        load_routes(write(tmp_path, GOOD.replace("  json:", "  'a/b':")))
    with pytest.raises(RoutesError, match="YAML syntax"):
        load_routes(write(tmp_path, "routes: [\n"))
    with pytest.raises(RoutesError, match="mapping"):
        load_routes(write(tmp_path, "- a\n- b\n"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_manager_reloads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    clock = Clock()
    manager = RouteManager(path, interval_s=1.0, clock=clock)
    assert set(manager.current().routes) == {"demo", "json"} and manager.last_error is None

    path.write_text(GOOD.replace("kind: openai-images", "kind: nonsense"))
    assert set(manager.current().routes) == {"demo", "json"}  # not polled yet
    clock.now = 1.5
    table = manager.current()
    assert table.routes["demo"].kind == "openai-images"  # refused: last good keeps serving
    assert manager.last_error is not None and "routes.demo.kind" in manager.last_error
    assert manager.status()["last_error"] == manager.last_error

    path.write_text(GOOD.replace("timeout_s: 60", "timeout_s: 5"))
    clock.now = 3.0
    assert manager.current().routes["demo"].timeout_s == 5 and manager.last_error is None

    path.unlink()
    clock.now = 4.5
    assert manager.current().routes == {}


def test_render_keeps_types_and_drops_missing_values() -> None:
    template = {
        "text": "{prompt}",
        "count": "{n}",
        "size": "{width}x{height}",
        "init": "{image}",
        "fixed": 7,
        "list": ["{prompt}", "{image}"],
        "label": "p: {prompt}",
    }
    out = render(template, {"prompt": "a cat", "n": 2, "width": 64, "height": 32, "image": None})
    assert out == {
        "text": "a cat",
        "count": 2,
        "size": "64x32",
        "fixed": 7,
        "list": ["a cat"],
        "label": "p: a cat",
    }
    with pytest.raises(TemplateError, match="unknown placeholder"):
        render({"x": "{nope}"}, {})
    with pytest.raises(TemplateError, match="unknown placeholder"):
        render({"x": "a {nope}"}, {})


def test_extract_paths() -> None:
    doc = {"output": {"images": [{"base64": "A"}, {"base64": "B"}]}, "flat": ["X", "Y"], "one": "Z"}
    assert extract(doc, "output.images.*.base64") == ["A", "B"]
    assert extract(doc, "output.images.1.base64") == ["B"]
    assert extract(doc, "flat") == ["X", "Y"] and extract(doc, "one") == ["Z"]
    for bad in ("output.nope", "flat.5", "one.*", "one.x"):
        with pytest.raises(TemplateError):
            extract(doc, bad)
