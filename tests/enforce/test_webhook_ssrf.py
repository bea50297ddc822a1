"""Issue #15.7: no SSRF through job webhooks. Before the fix a webhook to `http://127.0.0.1:<port>/`
was delivered. Now webhooks go only to allowlisted hosts (`CONSENTGATE_WEBHOOK_HOSTS`); non-public
addresses (loopback, private, link-local/metadata) only when the host is listed exactly; the name is
resolved once and the connection pinned to that address (no DNS rebinding); no redirects; the job
shows only `delivered` / `failed`. Tested with a real local server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gateway.errors import Invalid
from gateway.jobs.webhook import DELIVERED, FAILED, check_webhook_url, send_webhook


class Hook(BaseHTTPRequestHandler):
    calls: list[dict[str, object]] = []
    redirect = False

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.calls.append({"path": self.path, "host": self.headers["Host"], **body})
        if Hook.redirect:
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    Hook.calls, Hook.redirect = [], False
    httpd = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


PAYLOAD = {"job_id": "j1", "state": "done", "decision": "allow", "decision_id": "d1"}


def test_loopback_is_refused_by_default_and_delivered_when_listed(server: int) -> None:
    url = f"http://127.0.0.1:{server}/hook"
    with pytest.raises(Invalid, match="webhooks are off"):
        check_webhook_url(url, ())
    with pytest.raises(Invalid, match="not allowed"):
        check_webhook_url(url, ("hooks.example", ".example.com"))
    assert send_webhook(url, PAYLOAD, timeout_s=5) == FAILED  # no allowlist
    assert send_webhook(url, PAYLOAD, timeout_s=5, allowed_hosts=("hooks.example",)) == FAILED
    assert Hook.calls == []
    assert send_webhook(url, PAYLOAD, timeout_s=5, allowed_hosts=("127.0.0.1",)) == DELIVERED
    assert Hook.calls == [{"path": "/hook", "host": f"127.0.0.1:{server}", **PAYLOAD}]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254", "::1",
                                     "fd00:ec2::254", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1"])  # noqa: S104
def test_a_listed_suffix_resolving_to_a_non_public_address_is_refused(server: int, address: str) -> None:
    """DNS rebinding: the allowlisted name answers with an internal address at delivery time."""
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return [address]

    url = f"http://hooks.corp.example:{server}/hook"
    assert check_webhook_url(url, (".corp.example",)) == url
    assert send_webhook(url, PAYLOAD, timeout_s=5, allowed_hosts=(".corp.example",), resolve=resolve) == FAILED
    assert resolved == ["hooks.corp.example"] and Hook.calls == []


def test_the_connection_is_pinned_to_the_address_resolved_once(server: int) -> None:
    """The name is resolved once and the request goes to that address, with the name in Host."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    url = f"http://hooks.test:{server}/done?x=1"
    assert send_webhook(url, PAYLOAD, timeout_s=5, allowed_hosts=("hooks.test",), resolve=resolve) == DELIVERED
    assert lookups == ["hooks.test"]
    assert Hook.calls == [{"path": "/done?x=1", "host": f"hooks.test:{server}", **PAYLOAD}]


def test_redirects_are_not_followed_and_the_status_is_coarse(server: int) -> None:
    Hook.redirect = True
    status = send_webhook(f"http://127.0.0.1:{server}/hook", PAYLOAD, timeout_s=5, allowed_hosts=("127.0.0.1",))
    assert status == FAILED and len(Hook.calls) == 1


def test_metadata_literal_needs_an_exact_listing() -> None:
    with pytest.raises(Invalid, match="non-public"):
        check_webhook_url("http://169.254.169.254/latest/meta-data/", ("169.254.169.254/16", ".254"))
    assert check_webhook_url("http://93.184.215.14/x", ("93.184.215.14",))
