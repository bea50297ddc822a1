"""The person in the picture, in a real browser: they sign in with the access token a registrar gave
them, see their grant and the use made under it, verify that use's proof in their browser, revoke
the grant (after confirming) — and the next check of their face is denied — download their data and
ask to be erased. The token opens nothing else. axe-core on the page; a screenshot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, expect

from tests.console.conftest import Console
from tests.console.test_browser import sign_in
from tests.console.test_browser_registry import axe
from tests.support.gateway import png


def test_a_person_revokes_their_grant_and_the_next_check_is_denied(
        chromium: Browser, console: Console, astronaut: np.ndarray, axe_source: str,
        shoot: Callable[[Any, str], Path], tmp_path: Path) -> None:
    reg = console.keys.registrar
    subject = console.api("POST", "/v1/subjects", reg, json={"display_name": "Eileen"}).json()
    sid = subject["id"]
    enrolled = console.api("POST", f"/v1/subjects/{sid}/faces", reg, data={"notice_version": "likeness-2026-1"},
                           files=[("media", ("a.png", png(astronaut), "image/png"))])
    assert enrolled.status_code == 201, enrolled.text
    grant = console.api("POST", f"/v1/subjects/{sid}/grants", reg,
                        json={"grantee_tenant": "acme", "uses": ["face_swap"]}).json()
    used = console.check(console.keys.generator, {"stage": "input", "use": "face_swap"}, png(astronaut))
    assert used["decision"] == "allow"
    console.gw.audit.publish_checkpoint()
    token = console.api("POST", f"/v1/subjects/{sid}/access-tokens", reg, json={"expires_in": 3600}).json()["token"]

    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    sign_in(page, console, token)
    expect(page.locator("#who-text")).to_have_text("Signed in: your personal page")
    expect(page.get_by_role("heading", name="Your consent, Eileen")).to_be_visible()
    grant_row = page.locator("table").first.locator("tbody tr")
    expect(grant_row).to_have_count(1)
    expect(grant_row).to_contain_text("acme")
    expect(grant_row).to_contain_text("face swaps")
    index = used["audit"]["index"]
    page.get_by_role("button", name=f"Verify use {index}").click()
    expect(page.locator(f"#use-{index}-result")).to_have_text("Verified in your browser", timeout=20_000)
    axe(page, axe_source, "subject portal")
    shoot(page, "20-your-consent")

    # the token opens nothing but this person's own pages
    assert page.evaluate("async () => (await fetch('v1/audit/entries')).status") == 403
    other = console.api("POST", "/v1/subjects", reg, json={"display_name": "Someone else"}).json()["id"]
    assert page.evaluate(f"async () => (await fetch('v1/subjects/{other}/grants')).status") == 404

    with page.expect_download() as got:
        page.get_by_role("button", name="Download my data").click()
    data = json.loads(Path(got.value.path()).read_text())
    assert sid in json.dumps(data) and grant["id"] in json.dumps(data)

    grant_row.get_by_role("button", name="Revoke the grant to acme").click()
    yes = page.get_by_role("button", name="Yes, revoke")
    expect(yes).to_be_focused()
    page.keyboard.press("Enter")
    expect(grant_row).to_contain_text("revoked")
    denied = console.check(console.keys.generator, {"stage": "input", "use": "face_swap"}, png(astronaut))
    assert denied["decision"] == "deny"
    assert [f["consent"]["state"] for f in denied["findings"]["faces"]] == ["revoked"]

    page.get_by_role("button", name="Ask to be erased").click()
    page.get_by_role("button", name="Yes, erase me").click()
    expect(page.locator("#erasure-result")).to_contain_text("Your request is recorded")
    shoot(page, "21-your-consent-after")
    context.close()
