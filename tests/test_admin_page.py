"""The admin page at scale: 250 Tenants, listed a page at a time (limit + continue, as
Kubernetes lists), filtered by phase on the API server, with welcome-email and logo columns,
a tenant's detail (conditions, Events) and sign-out; the API as a real process under its
chart's ServiceAccount, headless Chromium as the admin's browser.

The operator is stopped while the 250 Tenants exist: they are the admin page's data, not
signups to provision (made with statuses as the operator and the workers would write them)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from playwright.sync_api import Browser, Page, expect

from herd_core.constants import GROUP, VERSION
from herd_devkit.local import admin as local_admin
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import get_settings

from .helpers import ApiProcess, OperatorProcess, wait_for

COUNT = 250
BATCH_LABEL = "test.herd-itt.com/batch"
# A 1x1 PNG: the logo column shows what status.logo.url64 points at.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
pytestmark = pytest.mark.slow


def _status(i: int) -> dict[str, Any] | None:
    """Every fifth Tenant untouched (Pending), then Provisioning, Ready, Failed, and Ready with
    its welcome email sent and a logo."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = i % 5
    if kind == 0:
        return None
    if kind == 1:
        return {"phase": "Provisioning"}
    if kind == 3:
        return {
            "phase": "Failed",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidSpec",
                    "message": f"realm t{i} is taken",
                    "lastTransitionTime": now,
                }
            ],
        }
    status: dict[str, Any] = {"phase": "Ready", "welcomeEmail": {"queuedAt": now}}
    if kind == 4:
        status["welcomeEmail"]["sentAt"] = now
        status["logo"] = {"url64": PIXEL, "url256": PIXEL, "updatedAt": now}
    return status


PHASE = {0: "Pending", 1: "Provisioning", 2: "Ready", 3: "Failed", 4: "Ready"}
EMAIL = {0: "not queued", 1: "not queued", 2: "queued", 3: "not queued", 4: "sent"}


@pytest.fixture(scope="module")
def many(
    api: ApiClient, api_server: ApiProcess, operator: OperatorProcess, tenants_ns: str
) -> Iterator[list[str]]:
    """250 Tenants named aa0-<batch>-NNN (first in name order) in the API's namespace."""
    operator.stop()
    batch = uuid.uuid4().hex[:6]
    custom = client.CustomObjectsApi(api)
    names = [f"aa0-{batch}-{i:03d}" for i in range(COUNT)]
    try:
        for i, name in enumerate(names):
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                tenants_ns,
                "tenants",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Tenant",
                    "metadata": {"name": name, "labels": {BATCH_LABEL: batch}},
                    "spec": {
                        "displayName": f"Farm {i:03d}",
                        "slug": name,
                        "adminEmail": f"owner@{name}.example.com",
                        "plan": "starter",
                    },
                },
            )
            status = _status(i)
            if status:
                custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, tenants_ns, "tenants", name, {"status": status}
                )
        failed = names[3]
        client.CoreV1Api(api).create_namespaced_event(
            tenants_ns,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{failed}."),
                involved_object=client.V1ObjectReference(
                    api_version=f"{GROUP}/{VERSION}",
                    kind="Tenant",
                    name=failed,
                    namespace=tenants_ns,
                ),
                reason="RealmFailed",
                message="OpenRemote answered 409 for the realm",
                type="Warning",
                count=2,
                last_timestamp=dt.datetime.now(dt.UTC),
                source=client.V1EventSource(component="herd-operator"),
            ),
        )
        yield names
    finally:
        custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, tenants_ns, "tenants", label_selector=f"{BATCH_LABEL}={batch}"
        )
        operator.start()


@pytest.fixture(scope="module")
def seeded_admin(
    moto: MotoServer, aws_env: bootstrap.Environment, tmp_path_factory: pytest.TempPathFactory
) -> local_admin.LocalAdmin:
    """The admin `make up` seeds, seeded the same way into the tests' user pool."""
    settings = moto.settings(get_settings(), aws_max_attempts=1)
    state = tmp_path_factory.mktemp("state")
    first = local_admin.seed(settings, aws_env.user_pool_id, state)
    again = local_admin.seed(settings, aws_env.user_pool_id, state)  # idempotent
    assert first == again and (state / local_admin.FILE).stat().st_mode & 0o077 == 0
    return first


def token(api_server: ApiProcess, who: tuple[str, str]) -> dict[str, str]:
    response = httpx.post(
        f"{api_server.url}/v1/auth/token",
        json={"username": who[0], "password": who[1]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['idToken']}"}


def walk(api_server: ApiProcess, auth: dict[str, str], **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of the admin list, following `continue`."""
    pages: list[list[dict[str, Any]]] = []
    cont: str | None = None
    while True:
        query = {**params, **({"continue": cont} if cont else {})}
        response = httpx.get(f"{api_server.url}/v1/tenants", params=query, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cont = response.json()["continue"]
        if not cont:
            return pages


def test_the_admin_api_pages_and_filters_by_phase(
    many: list[str], api_server: ApiProcess, users: dict[str, tuple[str, str]]
) -> None:
    auth = token(api_server, users["admin"])
    mine = set(many)
    pages = walk(api_server, auth, limit=100)
    assert all(len(p) <= 100 for p in pages) and len(pages) >= 3
    seen = [t["slug"] for p in pages for t in p]
    assert len(seen) == len(set(seen)) and mine <= set(seen)
    by_slug = {t["slug"]: t for p in pages for t in p}
    for i, name in enumerate(many):
        row = by_slug[name]
        assert row["phase"] == PHASE[i % 5], row
        assert row["welcomeEmail"] == EMAIL[i % 5], row
        assert (row["logo"] is not None) == (i % 5 == 4), row

    for phase in ("Failed", "Pending", "Ready"):
        filtered = walk(api_server, auth, limit=20, phase=phase)
        assert all(len(p) <= 20 for p in filtered)
        rows = [t for p in filtered for t in p]
        assert rows and all(t["phase"] == phase for t in rows), phase
        expected = {n for i, n in enumerate(many) if PHASE[i % 5] == phase}
        assert {t["slug"] for t in rows} & mine == expected, phase

    bad = httpx.get(
        f"{api_server.url}/v1/tenants", params={"phase": "Sleeping"}, headers=auth, timeout=30
    )
    assert bad.status_code == 422
    expired = httpx.get(
        f"{api_server.url}/v1/tenants", params={"continue": "garbage"}, headers=auth, timeout=30
    )
    assert expired.status_code == 400


def test_a_tenants_detail_has_its_conditions_and_events(
    many: list[str], api_server: ApiProcess, users: dict[str, tuple[str, str]]
) -> None:
    url = f"{api_server.url}/v1/tenants/{many[3]}"
    assert httpx.get(url, timeout=30).status_code == 401
    member = httpx.get(url, headers=token(api_server, users["member"]), timeout=30)
    assert member.status_code == 403
    auth = token(api_server, users["admin"])
    detail = httpx.get(url, headers=auth, timeout=30).json()
    assert detail["phase"] == "Failed"
    assert detail["conditions"][0]["message"] == "realm t3 is taken"
    assert detail["events"][0]["reason"] == "RealmFailed" and detail["events"][0]["count"] == 2
    gone = httpx.get(f"{api_server.url}/v1/tenants/aa0-none", headers=auth, timeout=30)
    assert gone.status_code == 404
    assert "Forbidden" not in api_server.log_text()  # the chart's Role lets it read Events


def slugs(page: Page) -> list[str]:
    return page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.slug)")


def test_an_admin_pages_through_250_tenants_in_chromium(
    many: list[str],
    api_server: ApiProcess,
    seeded_admin: local_admin.LocalAdmin,
    browser: Browser,
    tmp_path: Path,
) -> None:
    page = browser.new_page()
    # A newcomer finds the admin page from the signup page.
    page.goto(f"{api_server.url}/")
    page.click("#admin-link")
    expect(page).to_have_url(f"{api_server.url}/admin")
    page.fill("#username", seeded_admin.email)
    page.fill("#password", seeded_admin.password)
    page.click("#signin")
    expect(page.locator("#tenants")).to_be_visible(timeout=15_000)
    expect(page.locator("#who")).to_have_text(seeded_admin.email)

    # 50 a page, not everything at once; the batch sorts first.
    expect(page.locator("#rows tr")).to_have_count(50)
    first = slugs(page)
    assert first == many[:50]
    expect(page.locator("#page-info")).to_have_text("page 1: 1-50")
    row = page.locator(f"tr[data-slug='{many[4]}']")
    expect(row.locator("td.email")).to_contain_text("sent ")
    expect(row.locator("img.logo")).to_have_attribute("src", PIXEL)
    expect(page.locator(f"tr[data-slug='{many[2]}'] td.email")).to_have_text("queued")
    expect(page.locator(f"tr[data-slug='{many[0]}'] td.phase")).to_have_text("Pending")

    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("page 2: 51-100")
    assert slugs(page) == many[50:100]
    page.click("#next")
    page.click("#next")
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("page 5: 201-250")
    assert slugs(page) == many[200:250]
    page.click("#prev")
    expect(page.locator("#page-info")).to_have_text("page 4: 151-200")
    assert slugs(page) == many[150:200]
    page.screenshot(path=str(tmp_path / "admin-page-4.png"))

    # The phase filter starts from the first page and shows only that phase.
    page.select_option("#phase", "Failed")
    expect(page.locator("#page-info")).to_have_text("page 1: 1-50")
    wait_for(lambda: slugs(page) == many[3::5], 30, "the batch's 50 Failed tenants")
    assert set(page.locator("#rows td.phase").all_inner_texts()) == {"Failed"}

    # A tenant's detail: conditions with their messages, recent Events.
    page.click(f"tr[data-slug='{many[3]}'] button.open")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-conditions tr[data-type='Ready']")).to_contain_text(
        "realm t3 is taken"
    )
    expect(page.locator("#detail-events")).to_contain_text("RealmFailed")
    page.click("#back")
    expect(page.locator("#tenants")).to_be_visible()

    # Sign out: the token is gone, and a reload does not bring the list back.
    page.click("#signout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#tenants")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('herd-token')") is None
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#account")).to_be_hidden()
