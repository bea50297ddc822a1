"""Issue #15.4: `routes.yaml` is part of the verified policy bundle. Before the fix, with a trust key
set, an unsigned edit of routes.yaml was refused as a bundle (`/readyz`: "the signature does not
match this bundle") — and the edited route was live anyway (the route manager read the file on its
own). Now the routes come from the activated bundle's bytes, in the same swap as the policies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.policy.signing import generate_keypair, sign_bundle
from tests.support.gateway import Keys, auth, make_settings

ROUTES = """
routes:
  demo:
    kind: openai-images
    url: {url}
    use: txt2img
    model: {{name: demo-upstream, version: "1"}}
"""


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def url_of(client: TestClient) -> str:
    return str(client.app.state.gateway.proxy.routes.current().routes["demo"].url)  # type: ignore[attr-defined]


def test_an_unsigned_routes_edit_is_refused_and_the_last_good_route_stays_live(tmp_path: Path) -> None:
    signing = tmp_path / "signing"
    signing.mkdir()
    generate_keypair(signing / "k", signing / "k.pub")
    settings = make_settings(tmp_path / "gw", policy_trust_key=signing / "k.pub")
    routes = settings.policies_dir / "routes.yaml"
    routes.write_text(ROUTES.format(url="http://127.0.0.1:9001"))
    sign_bundle(settings.policies_dir, signing / "k")
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        admin = Keys(client).admin
        assert url_of(client).startswith("http://127.0.0.1:9001")
        good = gw.policies.active
        assert good.attachments["routes"] is gw.proxy.routes.current()  # one swap: routes ride on the bundle

        routes.write_text(ROUTES.format(url="http://127.0.0.1:9666"))  # edited, not re-signed
        wait_for(lambda: gw.policies.last_error is not None)
        assert url_of(client).startswith("http://127.0.0.1:9001")  # the edit is NOT live
        assert gw.policies.active is good
        ready = client.get("/readyz", headers=auth(admin)).json()
        assert "signature does not match" in ready["last_error"]
        assert "signature does not match" in ready["routes"]["last_error"]

        sign_bundle(settings.policies_dir, signing / "k")  # signed: now it goes live, with the policies
        wait_for(lambda: gw.policies.last_error is None and gw.policies.active is not good)
        assert url_of(client).startswith("http://127.0.0.1:9666")


def test_an_invalid_routes_file_refuses_the_whole_bundle(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "gw")
    routes = settings.policies_dir / "routes.yaml"
    routes.write_text(ROUTES.format(url="http://127.0.0.1:9001"))
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        good = gw.policies.active
        assert url_of(client).startswith("http://127.0.0.1:9001")
        routes.write_text(ROUTES.format(url="http://127.0.0.1:9002").replace("kind: openai-images", "kind: nope"))
        (settings.policies_dir / "default.yaml").write_text(
            (settings.policies_dir / "default.yaml").read_text() + "\n# an edit that alone would be fine\n")
        wait_for(lambda: gw.policies.last_error is not None)
        assert "routes.yaml" in gw.policies.last_error and "kind" in gw.policies.last_error
        assert gw.policies.active is good and url_of(client).startswith("http://127.0.0.1:9001")


def test_a_routes_file_outside_the_signed_bundle_is_refused_under_a_trust_key(tmp_path: Path) -> None:
    signing = tmp_path / "signing"
    signing.mkdir()
    generate_keypair(signing / "k", signing / "k.pub")
    outside = tmp_path / "routes.yaml"
    outside.write_text(ROUTES.format(url="http://127.0.0.1:9001"))
    settings = make_settings(tmp_path / "gw", policy_trust_key=signing / "k.pub", extra={"routes_file": str(outside)})
    sign_bundle(settings.policies_dir, signing / "k")
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        assert gw.policies.active is not None
        assert gw.proxy.routes.current().routes == {}
        assert "outside the policy directory" in (gw.proxy.routes.status()["last_error"] or "")
