"""The signup page with email verification on (headless Chromium against the real API, N9):
after a signup it says to check the email, and nothing exists; the email's link opens the
page, which confirms only on a click and then follows the tenant as before; a link that does
not verify says so."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from herd_devkit.local.moto_server import MotoServer

from .helpers import ApiProcess, Custom, wait_for
from .test_api import the_link

pytestmark = [pytest.mark.usefixtures("live_operator", "worker"), pytest.mark.slow]


def test_the_page_asks_to_check_the_email_and_its_link_confirms_on_a_click(
    browser: Browser, verifying_api: ApiProcess, moto: MotoServer, api: Any, tenants_ns: str
) -> None:
    slug = f"vp-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example.com"
    tenants = Custom(api, tenants_ns)
    page = browser.new_page()
    page.goto(f"{verifying_api.url}/")
    page.fill("#displayName", "Verify Farms")
    page.fill("#slug", slug)
    page.fill("#adminEmail", email)
    page.click("#submit")
    expect(page.locator("#check-email")).to_contain_text("Check your email to confirm")
    expect(page.locator("#check-email-address")).to_have_text(email)
    expect(page.locator("#status")).to_be_hidden()
    assert not tenants.exists("tenants", slug)

    link = the_link(moto, email)
    confirm = browser.new_page()
    confirm.goto(link)
    expect(confirm.locator("#confirm-what")).to_contain_text(f"tenant {slug} (Verify Farms")
    assert "#verify" not in confirm.url  # the token is out of the history
    assert not tenants.exists("tenants", slug)  # opening the link confirms nothing
    confirm.click("#confirm-submit")
    expect(confirm.locator("#status-slug")).to_have_text(slug)
    expect(confirm.locator("#phase")).to_have_text("Accepted")
    expect(confirm.locator("#logo-email")).to_have_value(email)
    wait_for(lambda: tenants.exists("tenants", slug), 30, "the Tenant the click made")

    # A link changed on the way says so, and makes nothing.
    changed = browser.new_page()
    changed.goto(link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB"))
    changed.click("#confirm-submit")
    expect(changed.locator("#confirm-error")).to_have_text("this verification link is not valid")
