"""Registrar and admin pages in a real browser: add a person, enrol their face after the notice is
shown (its version recorded), grant, revoke with confirmation — and the next check of their face is
denied; the admin sees the live policy and creates (shown once) and revokes keys. axe-core on each
page; screenshots saved with the test output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import Console
from tests.console.test_browser import sign_in
from tests.support.gateway import png


def axe(page: Page, source: str, name: str) -> None:
    page.evaluate(source)
    found = page.evaluate("async () => (await axe.run(document)).violations.map("
                          "v => `${v.impact} ${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)")
    assert found == [], f"{name}: {found}"


def test_registrar_enrols_grants_and_revokes(chromium: Browser, console: Console, astronaut: np.ndarray,
                                            axe_source: str, shoot: Callable[[Any, str], Path],
                                            tmp_path: Path) -> None:
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, console.keys.registrar)
    expect(page.get_by_role("heading", name="People in the registry")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Eileen Collins")
    page.get_by_label("Other names (comma-separated)").fill("E. Collins")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("heading", name="Eileen Collins")).to_be_visible()
    subject_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("region", name="Notice text")).to_contain_text("Your likeness is used only where you")
    face = tmp_path / "astronaut.png"
    face.write_bytes(png(astronaut))
    page.get_by_label("Files").set_input_files(str(face))
    page.get_by_label("The person has read this notice").check()
    page.get_by_role("button", name="Enrol", exact=True).click()
    expect(page.get_by_text("Enrolled under notice likeness-2026-1.")).to_be_visible(timeout=30_000)
    enrolments = [e.record for e in _entries(console, subject_id) if e.record.get("kind") == "enrolment"]
    assert enrolments and enrolments[-1].get("notice_version") == "likeness-2026-1"

    page.get_by_label("Who may use the likeness (tenant)").fill("acme")
    page.get_by_label("face_swap").check()
    page.get_by_role("button", name="Grant", exact=True).click()
    grant_row = page.locator("table tbody tr").filter(has_text="face_swap")
    expect(grant_row).to_contain_text("active")
    shoot(page, "10-person")
    axe(page, axe_source, "person")
    allowed = console.check(console.keys.generator, {"stage": "input", "use": "face_swap"}, png(astronaut))
    assert allowed["decision"] == "allow", allowed["reasons"]

    grant_row.get_by_role("button", name="Revoke").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("Revoke this grant for acme?")
    expect(confirm.get_by_role("button", name="Yes, revoke")).to_be_focused()
    page.keyboard.press("Enter")
    expect(grant_row).to_contain_text("revoked")
    denied = console.check(console.keys.generator, {"stage": "input", "use": "face_swap"}, png(astronaut))
    assert denied["decision"] == "deny"
    assert [f["consent"]["state"] for f in denied["findings"]["faces"]] == ["revoked"]
    page.get_by_role("link", name="People").click()
    expect(page.get_by_role("link", name="Open Eileen Collins")).to_be_visible()
    axe(page, axe_source, "people")
    shoot(page, "11-people")
    context.close()


def _entries(console: Console, subject_id: str) -> list[Any]:
    entries, _ = console.gw.audit.query(subject=subject_id, limit=100)
    return list(entries)


def test_admin_policy_and_keys(chromium: Browser, console: Console, axe_source: str,
                               shoot: Callable[[Any, str], Path]) -> None:
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, console.keys.admin)
    page.get_by_role("link", name="Keys & policy").click()
    expect(page.get_by_role("heading", name="Keys and policy")).to_be_visible()
    digest = console.gw.policies.status()["digest"]
    expect(page.locator("dl.facts")).to_contain_text(digest)
    expect(page.locator("dl.facts")).to_contain_text("accepted")
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Role").select_option("generator")
    page.get_by_label("Name (what it is for)").fill("console test")
    page.get_by_label("Uses it may request").fill("txt2img")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key")
    expect(key).to_contain_text("cg_")
    secret = key.inner_text()
    assert console.api("GET", "/v1/routes", secret).status_code == 200
    key_id = secret.split("_")[1]
    row = page.locator("table tbody tr").filter(has_text=key_id)
    expect(row).to_contain_text("txt2img")
    shoot(page, "12-keys-and-policy")
    axe(page, axe_source, "keys and policy")
    row.get_by_role("button", name=f"Revoke key {key_id}").click()
    page.get_by_role("button", name="Yes, revoke").click()
    expect(page.locator("table tbody tr").filter(has_text=key_id)).to_contain_text("revoked")
    assert console.api("GET", "/v1/routes", secret).status_code == 401
    context.close()


def test_provenance_drop(chromium: Browser, console: Console, coffee: np.ndarray, chelsea: np.ndarray,
                         axe_source: str, shoot: Callable[[Any, str], Path], tmp_path: Path) -> None:
    from tests.support.gateway import jpeg

    released = console.api("POST", "/v1/release", console.keys.generator, data={"request": '{"use": "txt2img"}'},
                            files=[("media", ("r.jpg", jpeg(coffee), "image/jpeg"))])
    assert released.status_code == 200, released.text
    marked = tmp_path / "released.jpg"
    marked.write_bytes(released.content)
    unrelated = tmp_path / "cat.jpg"
    unrelated.write_bytes(jpeg(chelsea))
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, console.keys.auditor)
    page.get_by_role("link", name="Provenance").click()
    expect(page.get_by_role("heading", name="Where did this file come from?")).to_be_visible()
    page.get_by_label("choose a file").set_input_files(str(marked))
    result = page.locator("#provenance-result")
    expect(result).to_contain_text("Trusted — signed by a certificate this gateway trusts", timeout=30_000)
    expect(result).to_contain_text(released.headers["x-decision-id"])
    expect(result).to_contain_text("It relied on no grant")
    expect(result.get_by_role("link", name=f"#{released.headers['x-audit-index']} (open and verify)")).to_be_visible()
    axe(page, axe_source, "provenance")
    shoot(page, "13-provenance")
    page.get_by_label("choose a file").set_input_files(str(unrelated))
    expect(page.locator("#provenance-none")).to_be_visible(timeout=30_000)
    expect(result).to_contain_text("No C2PA manifest")
    context.close()
