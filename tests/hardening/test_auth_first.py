"""Issue #15.9: cheap to refuse. Authentication happens before a body is read: an unauthenticated
(or wrongly keyed) 1 GB upload is a 401 right after the headers, with the server's RSS growing by
less than 10 MB. Before the fix FastAPI parsed (and spooled) the multipart form first and only
then ran the auth dependency, so the same upload cost the body limit's worth of reading and a 413.
The OpenAI-compatible routes (`/v1/images/*`, `/v1/audio/speech`) answered their own 401 after reading
the body until they were put behind the same check (their refusals keep OpenAI's error shape)."""

from __future__ import annotations

import json
import os

import pytest

from tests.hardening.conftest import PeakRss, Served
from tests.hardening.test_body_limits import BOUNDARY, MB, multipart_stream, raw_post

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("path", ["/v1/check", "/v1/release", "/v1/jobs", "/v1/provenance/verify",
                                  "/v1/images/generations", "/v1/images/edits", "/v1/audio/speech"])
@pytest.mark.parametrize("auth", [None, "Bearer cg_000000000000_not-a-key", "Basic dXNlcjpwYXNz"])
def test_an_unauthenticated_1gb_upload_is_401_after_the_headers(served: Served, path: str, auth: str | None) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if auth:
        headers["Authorization"] = auth
    with PeakRss(os.getpid()) as rss:
        resp = raw_post(served, path, headers, multipart_stream('{"stage": "input", "use": "img2img"}', 1 << 30),
                        chunked=True)
    assert resp.status == 401, resp.body[:300]
    assert resp.sent < 8 * MB, f"the server read {resp.sent / MB:.1f} MB before refusing"
    assert rss.growth < 10 * MB, f"RSS grew by {rss.growth / MB:.1f} MB"
    error = json.loads(resp.body)["error"]
    if path.startswith(("/v1/images/", "/v1/audio/")):  # the OpenAI surface keeps OpenAI's error object
        assert error["type"] == "authentication_error" and error["param"] is None and error["code"], error
    else:
        assert set(error) == {"code", "message"}, error
