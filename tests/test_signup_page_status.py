"""The signup page under L5 (headless Chromium against the real API): the status it shows
is "Accepted" for a new address and for one that has signed up alike, and the progress
shows once the tenant's admin signs in on the page."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from herd_core import aws
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from . import logo_files
from .helpers import ApiProcess, Custom

pytestmark = [pytest.mark.usefixtures("live_operator", "worker"), pytest.mark.slow]


def sign_up(browser: Browser, api_server: ApiProcess, slug: str, email: str) -> Page:
    page = browser.new_page()
    page.goto(f"{api_server.url}/")
    page.fill("#displayName", "Status Farms")
    page.fill("#slug", slug)
    page.fill("#adminEmail", email)
    page.click("#submit")
    expect(page.locator("#status")).to_be_visible(timeout=15_000)
    expect(page.locator("#status-slug")).to_have_text(slug)
    return page


def test_the_page_shows_progress_to_the_signed_in_admin_only(
    browser: Browser,
    api_server: ApiProcess,
    api: Any,
    tenants_ns: str,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    slug = f"st-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example.com"
    page = sign_up(browser, api_server, slug, email)
    expect(page.locator("#phase")).to_have_text("Accepted", timeout=15_000)
    # Someone else tries the same address under a slug of theirs: the page says the same.
    probe = sign_up(browser, api_server, f"st-{uuid.uuid4().hex[:8]}", email)
    expect(probe.locator("#phase")).to_have_text("Accepted", timeout=15_000)
    assert probe.locator("#conditions tr").count() == page.locator("#conditions tr").count() == 0

    # The admin sets a password after the welcome email and signs in on the page.
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
    expect(probe.locator("#phase")).to_have_text("Accepted")
