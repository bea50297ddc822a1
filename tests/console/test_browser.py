"""The console in a real browser (Debian's chromium through Playwright), under its real CSP: sign-in
and sign-out by keyboard alone, the key never kept in the browser, filters, in-browser Verify
(verified; failed once an entry is changed in the database), checkpoints, an accessibility check
(axe-core) of every page, and a screenshot of each page saved with the test output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.console.conftest import Console


@pytest.fixture
def watched(page: Page) -> Iterator[tuple[Page, list[str]]]:
    """The page, and every console error it logs (a CSP violation shows up here)."""
    errors: list[str] = []

    def log(msg: ConsoleMessage) -> None:
        if msg.type == "error" and "401" not in msg.text:  # a 401 before sign-in is expected
            errors.append(msg.text)

    page.on("console", log)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page, errors


def sign_in(page: Page, console: Console, key: str) -> None:
    page.goto(console.url + "/")
    expect(page).to_have_url(console.url + "/console")
    field = page.get_by_label("API key")
    expect(field).to_be_focused()  # keyboard users start typing at once
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator("#who-text")).to_contain_text("Signed in")
    expect(field).to_have_count(0)


def test_sign_in_and_sign_out_by_keyboard(watched: tuple[Page, list[str]], console: Console,
                                          shoot: Callable[[Any, str], Path]) -> None:
    page, errors = watched
    page.goto(console.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, "01-sign-in")
    sign_in(page, console, console.keys.auditor)
    expect(page.locator("#who-text")).to_have_text("Signed in: auditor of operator")
    stored = page.evaluate("() => JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])")
    assert console.keys.auditor not in stored and "cg_session" not in stored  # HttpOnly: scripts cannot read it
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("cg_session", True, "Strict")]
    assert console.keys.auditor not in str(cookies)
    page.reload()  # the session survives a reload (server-side), the key is not needed again
    expect(page.locator("#who-text")).to_have_text("Signed in: auditor of operator")
    sign_out = page.get_by_role("button", name="Sign out")
    sign_out.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("You are signed out.")
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert errors == []


def test_a_wrong_key_is_refused_in_plain_words(watched: tuple[Page, list[str]], console: Console) -> None:
    page, _ = watched
    page.goto(console.url + "/console")
    page.get_by_label("API key").fill(console.keys.generator)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("generator keys cannot sign in to the console")


def test_filters_and_paging(watched: tuple[Page, list[str]], console: Console,
                            shoot: Callable[[Any, str], Path]) -> None:
    page, errors = watched
    sign_in(page, console, console.keys.auditor)
    expect(page.get_by_role("heading", name="Decisions and consent events")).to_be_visible()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    shoot(page, "02-decisions")
    page.get_by_label("Verdict").select_option("deny")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("deny")
    expect(rows.first).to_contain_text(str(console.denied["audit"]["index"]))
    page.get_by_label("Verdict").select_option("")
    page.get_by_label("Tenant").fill("globex")
    page.get_by_label("Tenant").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("globex")
    page.get_by_label("Tenant").fill("")
    page.get_by_label("Model").fill("nudenet")  # only the img2img input check ran NudeNet
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("img2img")
    shoot(page, "03-decisions-filtered")
    assert errors == []


def test_a_tenant_auditor_sees_only_its_tenant(watched: tuple[Page, list[str]], console: Console) -> None:
    page, _ = watched
    sign_in(page, console, console.keys.tenant_auditor)
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i)).to_contain_text("acme")


def test_verify_in_the_browser(watched: tuple[Page, list[str]], console: Console,
                               shoot: Callable[[Any, str], Path]) -> None:
    page, errors = watched
    sign_in(page, console, console.keys.auditor)
    index = console.allowed["audit"]["index"]
    page.get_by_role("link", name=f"Open entry {index}").click()
    expect(page.get_by_role("heading", name=f"Entry {index}")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text(console.allowed["policy"]["digest"])
    page.get_by_role("button", name="Verify in my browser").click()
    expect(page.locator("#verify-outcome")).to_have_text("Verified: this entry is in the signed log", timeout=20_000)
    expect(page.locator(".steps li.bad")).to_have_count(0)
    shoot(page, "04-entry-verified")
    page.get_by_role("link", name="Checkpoints").click()
    expect(page.locator("#consistency")).to_contain_text("First checkpoint seen in this browser")
    console.check(console.keys.generator, {"stage": "input", "use": "txt2img", "prompt": "a kite"})
    console.gw.audit.publish_checkpoint()
    page.reload()
    expect(page.locator("#consistency")).to_contain_text("Consistent with the checkpoint of")
    shoot(page, "05-checkpoints")
    assert errors == []


def test_accessibility_of_every_page(chromium: Browser, console: Console, axe_source: str) -> None:
    """axe-core on each page (a context that lets the test inject axe despite the CSP)."""
    context = chromium.new_context(bypass_csp=True)
    page = context.new_page()
    index = console.allowed["audit"]["index"]

    def audit(name: str) -> None:
        page.evaluate(axe_source)
        result = page.evaluate("async () => (await axe.run(document)).violations.map("
                               "v => `${v.impact} ${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)")
        assert result == [], f"{name}: {result}"

    page.goto(console.url + "/console")
    expect(page.get_by_label("API key")).to_be_visible()
    audit("sign-in")
    sign_in(page, console, console.keys.admin)
    expect(page.locator("table tbody tr").first).to_be_visible()
    audit("decisions")
    page.goto(f"{console.url}/console#/entry/{index}")
    expect(page.get_by_role("heading", name=f"Entry {index}")).to_be_visible()
    audit("entry")
    page.goto(f"{console.url}/console#/checkpoints")
    expect(page.locator("#consistency")).to_be_visible()
    audit("checkpoints")
    context.close()


def test_a_changed_entry_fails_verification(watched: tuple[Page, list[str]], console: Console,
                                           shoot: Callable[[Any, str], Path]) -> None:
    """Last in this module: it corrupts the log on purpose."""
    page, _ = watched
    index = console.denied["audit"]["index"]
    with console.gw.engine.begin() as conn:
        changed = conn.execute(sa.text(
            "UPDATE audit_entries SET record = replace(record, '\"decision\":\"deny\"', '\"decision\":\"allow\"') "
            "WHERE idx = :i"), {"i": index})
        assert changed.rowcount == 1
    sign_in(page, console, console.keys.auditor)
    page.goto(f"{console.url}/console#/entry/{index}")
    expect(page.locator("dl.facts")).to_contain_text("allow")  # what the tampered row now claims
    page.get_by_role("button", name="Verify in my browser").click()
    expect(page.locator("#verify-outcome")).to_have_text("Failed: this entry does not match the signed log",
                                                         timeout=20_000)
    expect(page.locator(".steps li.bad").first).to_be_visible()
    shoot(page, "06-entry-tampered-failed")
