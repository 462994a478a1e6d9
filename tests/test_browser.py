"""A person signs up through the page and an admin sees the signup: headless Chromium
(Debian's package, installed by `make setup`) driven by Playwright against the real API."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from .helpers import ApiProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.usefixtures("live_operator", "worker"), pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make setup` installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def test_sign_up_then_admin_sees_it(
    browser: Browser, api_server: ApiProcess, users: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    slug = f"web-{uuid.uuid4().hex[:8]}"
    page = browser.new_page()
    page.goto(f"{api_server.url}/")
    page.fill("#displayName", "Web Farms")
    page.fill("#slug", slug)
    page.fill("#adminEmail", f"owner@{slug}.example.com")
    page.select_option("#plan", "standard")
    page.click("#submit")
    expect(page.locator("#status")).to_be_visible(timeout=15_000)
    expect(page.locator("#status-slug")).to_have_text(slug)
    # The page polls the status endpoint until the operator has provisioned the tenant.
    expect(page.locator("#phase")).to_have_text("Ready", timeout=90_000)
    expect(page.locator("#conditions")).to_contain_text("WelcomeEmailQueued")
    page.screenshot(path=str(tmp_path / "signup.png"))

    # A duplicate signup shows the API's message on the page.
    again = browser.new_page()
    again.goto(f"{api_server.url}/")
    again.fill("#displayName", "Copycat")
    again.fill("#slug", slug)
    again.fill("#adminEmail", f"other@{slug}.example.com")
    again.click("#submit")
    expect(again.locator("#error")).to_have_text(f"the slug '{slug}' is already taken")

    admin = browser.new_page()
    admin.goto(f"{api_server.url}/admin")
    admin.fill("#username", users["admin"][0])
    admin.fill("#password", users["admin"][1])
    admin.click("#signin")
    row = admin.locator(f"tr[data-slug='{slug}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("Web Farms")
    expect(row).to_contain_text("Ready")


def test_admin_page_refuses_a_member(
    browser: Browser, api_server: ApiProcess, users: dict[str, tuple[str, str]]
) -> None:
    page = browser.new_page()
    page.goto(f"{api_server.url}/admin")
    page.fill("#username", users["member"][0])
    page.fill("#password", users["member"][1])
    page.click("#signin")
    expect(page.locator("#error")).to_contain_text("requires membership of the admins group")
    expect(page.locator("#tenants")).to_be_hidden()
