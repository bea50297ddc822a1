"""Request size limits and multipart abuse on a real server (raw sockets on loopback, so the test
controls exactly what is sent and when): a body over the limit gets 413 on every POST route of the
OpenAPI — at once when Content-Length says so, after about the limit when the body is streamed
without a length — and the gateway's memory does not grow with what the client tries to send. Zero-
length, too many, and huge parts, and a `request` part that is huge or not JSON: a 4xx, never a 5xx."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.hardening.conftest import PART_LIMIT, PeakRss, Served

MB = 1 << 20
MAX_BODY = PART_LIMIT * 4 + 1_000_000  # gateway.app: max_upload_bytes × min(max_media_parts, 4) + 1 MB
BOUNDARY = "hardeningboundary7d3f"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server took before it answered


def raw_post(
    served: Served,
    path: str,
    headers: dict[str, str],
    body: Iterator[bytes],
    *,
    chunked: bool,
    content_length: int | None = None,
    timeout_s: float = 60.0,
) -> RawResponse:
    """POST over a plain socket; stop sending as soon as the server has answered."""
    host, port = served.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            head.append("Transfer-Encoding: chunked")
        if content_length is not None:
            head.append(f"Content-Length: {content_length}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        for chunk in body:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            if chunked:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b"0\r\n\r\n")
        return _read_response(sock, sent)
    finally:
        sock.close()


def _read_response(sock: socket.socket, sent: int) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, f"no HTTP response (got {data[:200]!r})"
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            break
        rest += part
    return RawResponse(int(match.group(1)), headers, rest, sent)


def zeros(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    block = b"\0" * chunk
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def multipart_stream(request: str, part_bytes: int) -> Iterator[bytes]:
    """A multipart body: the `request` field, then one `media` file part of `part_bytes` zeros."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{request}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="media"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    yield b"\x89PNG\r\n\x1a\n"
    yield from zeros(part_bytes)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def post_routes(served: Served) -> list[tuple[str, str]]:
    """Every POST route of the gateway's OpenAPI, with path parameters filled in."""
    spec = served.http.get(served.url + "/openapi.json").json()
    out = []
    for path, ops in sorted(spec["paths"].items()):
        if "post" in ops:
            content = ops["post"].get("requestBody", {}).get("content", {})
            ctype = "multipart/form-data" if "multipart/form-data" in content else "application/json"
            out.append((re.sub(r"\{[^}]+\}", "demo", path), ctype if content else ""))
    return out


def key_for(served: Served, path: str) -> str:
    keys = served.keys
    if path.startswith(("/v1/subjects", "/v1/grants")):
        return keys.registrar
    if path.startswith(("/v1/apikeys", "/v1/policy")):
        return keys.admin
    return keys.generator


@pytest.mark.timeout(120)
def test_declared_oversize_body_is_413_on_every_post_route_before_any_byte_is_read(served: Served) -> None:
    routes = post_routes(served)
    assert len(routes) >= 12, routes
    for path, ctype in routes:
        ctype = ctype or "application/json"
        ctype_header = f"{ctype}; boundary={BOUNDARY}" if ctype.startswith("multipart") else ctype
        headers = {"Authorization": f"Bearer {key_for(served, path)}", "Content-Type": ctype_header}
        # Claims MAX_BODY + 1 bytes but the client waits for the answer before sending any of them.
        resp = raw_post(served, path, headers, iter(()), chunked=False, content_length=MAX_BODY + 1)
        assert resp.status == 413, (path, resp.status, resp.body[:200])
        assert json.loads(resp.body)["error"]["code"] == "too_large"
        assert resp.sent == 0


@pytest.mark.timeout(180)
def test_streamed_oversize_body_is_413_on_every_post_route_and_memory_stays_flat(served: Served) -> None:
    """No Content-Length: the gateway counts the chunks and stops at the limit. The client offers
    64 MB to each route (1 GB would behave the same: it stops being read at ~9 MB)."""
    offered = 64 * MB
    for path, ctype in post_routes(served):
        if ctype.startswith("multipart"):
            headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            body = multipart_stream(json.dumps({"use": "txt2img"}), offered)
        else:
            headers = {"Content-Type": ctype or "application/json"}
            body = zeros(offered)
        headers["Authorization"] = f"Bearer {key_for(served, path)}"
        with PeakRss() as rss:
            resp = raw_post(served, path, headers, body, chunked=True)
        if ctype:
            assert resp.status == 413, (path, resp.status, resp.body[:300])
        else:  # a route that takes no body answers without reading it
            assert resp.status < 500, (path, resp.status, resp.body[:300])
        assert resp.sent < MAX_BODY + 16 * MB, (path, resp.sent)  # the limit plus what socket buffers hold
        assert rss.growth < 48 * MB, (path, rss.growth / MB)


@pytest.mark.timeout(120)
def test_enormous_media_part_is_refused_without_buffering_it(served: Served) -> None:
    """1 GB offered as one `media` part to /v1/check: 413 after about the body limit; Python's heap
    (tracemalloc) and the process RSS grow by a few MB, not by what was offered."""
    headers = {
        "Authorization": f"Bearer {served.keys.generator}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        with PeakRss() as rss:
            resp = raw_post(
                served, "/v1/check", headers, multipart_stream('{"stage": "input", "use": "img2img"}', 1 << 30),
                chunked=True
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 413, resp.body[:300]
    assert resp.sent < MAX_BODY + 16 * MB
    assert peak - base < 24 * MB, f"Python heap peak grew by {(peak - base) / MB:.1f} MB"
    assert rss.growth < 48 * MB, f"RSS grew by {rss.growth / MB:.1f} MB"


@pytest.mark.timeout(120)
def test_part_over_the_part_limit_but_under_the_body_limit_is_413(served: Served) -> None:
    """A 6 MB part fits the body limit (9 MB) but not the part limit (2 MB): the upload is spooled
    to disk by the multipart parser and read back at most limit + 1 bytes."""
    headers = {
        "Authorization": f"Bearer {served.keys.generator}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    with PeakRss() as rss:
        resp = raw_post(
            served, "/v1/check", headers, multipart_stream('{"stage": "input", "use": "img2img"}', 6 * MB), chunked=True
        )
    assert resp.status == 413, resp.body[:300]
    assert "limit" in json.loads(resp.body)["error"]["message"]
    assert rss.growth < 48 * MB


def _check(served: Served, data: dict[str, str] | None = None, files: list | None = None):  # type: ignore[no-untyped-def]
    return served.post("/v1/check", served.keys.generator, data=data, files=files)


REQUEST = json.dumps({"stage": "input", "use": "img2img"})


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("zero-length media part", {400}),
        ("17 media parts (limit 16)", {413}),
        ("1001 media parts", {400, 413}),
        ("1500 form fields", {400, 413}),
        ("request part of 1.5 MB", {400, 413, 422}),
        ("request part sent as a file", {400, 415, 422}),
        ("request part not JSON", {400}),
        ("request part a JSON array", {400, 422}),
        ("request part missing", {400, 422}),
        ("request part with unknown keys", {422}),
        ("request part not UTF-8", {400, 422}),
    ],
)
def test_multipart_abuse_is_a_4xx(served: Served, case: str, expected: set[int]) -> None:
    empty = ("media", ("empty.png", b"", "image/png"))
    tiny = ("media", ("x.png", b"\x89PNG", "image/png"))
    if case == "zero-length media part":
        resp = _check(served, {"request": REQUEST}, [empty])
    elif case == "17 media parts (limit 16)":
        resp = _check(served, {"request": REQUEST}, [tiny] * 17)
    elif case == "1001 media parts":
        resp = _check(served, {"request": REQUEST}, [tiny] * 1001)
    elif case == "1500 form fields":
        resp = _check(served, {"request": REQUEST, **{f"f{i}": "x" for i in range(1500)}})
    elif case == "request part of 1.5 MB":
        resp = _check(served, {"request": json.dumps({"stage": "input", "use": "img2img", "prompt": "a" * 1_500_000})})
    elif case == "request part sent as a file":
        resp = _check(served, files=[("request", ("r.json", REQUEST.encode(), "application/json"))])
    elif case == "request part not JSON":
        resp = _check(served, {"request": "use=img2img&stage=input"})
    elif case == "request part a JSON array":
        resp = _check(served, {"request": "[1, 2, 3]"})
    elif case == "request part missing":
        resp = _check(served, files=[tiny])
    elif case == "request part with unknown keys":
        resp = _check(served, {"request": json.dumps({"stage": "input", "use": "img2img", "admin": True})})
    else:
        raw = b'{"stage": "input", "use": "img2\xff\xfeimg"}'
        resp = _check(served, files=[("request", (None, raw, "text/plain"))])
    assert resp.status_code in expected, (case, resp.status_code, resp.text[:300])
    assert resp.json()["error"]["code"]


REQUEST_JSON = "gateway/api/forms.py: parse_request_part catches only json.JSONDecodeError"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-100k-deep"),
        pytest.param('{"use": "img2img", "metadata": {"n": ' + "9" * 5000 + "}}", id="integer-5000-digits"),
    ],
)
def test_hostile_request_json_is_a_4xx(served: Served, raw: str) -> None:
    resp = _check(served, {"request": raw})
    assert 400 <= resp.status_code < 500, resp.text[:300]
