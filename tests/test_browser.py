"""A person signs up through the page and an admin sees the signup: headless Chromium
(Debian's package, installed by `make setup`) driven by Playwright against the real API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from herd_core import aws
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from . import logo_files
from .helpers import ApiProcess, Custom

pytestmark = [pytest.mark.usefixtures("live_operator", "worker"), pytest.mark.slow]


def test_sign_up_then_admin_sees_it(
    browser: Browser,
    api_server: ApiProcess,
    users: dict[str, tuple[str, str]],
    tmp_path: Path,
    api: Any,
    tenants_ns: str,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    slug = f"web-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example.com"
    page = browser.new_page()
    page.goto(f"{api_server.url}/")
    page.fill("#displayName", "Web Farms")
    page.fill("#slug", slug)
    page.fill("#adminEmail", email)
    page.select_option("#plan", "standard")
    page.click("#submit")
    expect(page.locator("#status")).to_be_visible(timeout=15_000)
    expect(page.locator("#status-slug")).to_have_text(slug)
    # Not signed in, the status says "Accepted" whatever exists (L5) ...
    expect(page.locator("#phase")).to_have_text("Accepted", timeout=15_000)
    # ... and once the tenant's admin signs in on the page (with the password set after
    # the welcome email), the page polls the progress until the tenant is provisioned.
    Custom(api, tenants_ns).wait_condition("tenants", slug, "CognitoUser", timeout=120)
    password = f"Tenant-{uuid.uuid4().hex[:10]}-9A"
    aws.client("cognito-idp", aws_settings).admin_set_user_password(
        UserPoolId=aws_env.user_pool_id, Username=email, Password=password, Permanent=True
    )
    page.fill("#logo-password", password)
    page.set_input_files(
        "#logo-file",
        files=[{"name": "logo.png", "mimeType": "image/png", "buffer": logo_files.png()}],
    )
    page.click("#logo-upload")
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
