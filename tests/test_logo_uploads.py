"""Logo uploads: the presigned POST the API answers, its policy (what AWS enforces; moto
5.2 does not enforce POST policy conditions, so the policy document itself is checked here,
and the thumbnail worker refuses what it should have stopped: tests/test_thumbnails.py), an
upload through moto with it, and who may ask for one."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from playwright.sync_api import Browser, expect

from herd_core import aws
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings, get_settings

from .helpers import ApiProcess, Custom

pytestmark = pytest.mark.usefixtures("live_operator")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
MAX_BYTES = 2 * 1024 * 1024


def token(api_server: ApiProcess, who: tuple[str, str]) -> dict[str, str]:
    response = httpx.post(
        f"{api_server.url}/v1/auth/token",
        json={"username": who[0], "password": who[1]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['idToken']}"}


def ask(api_server: ApiProcess, slug: str, auth: dict[str, str], ctype: str = "image/png") -> Any:
    return httpx.post(
        f"{api_server.url}/v1/tenants/{slug}/logo-uploads",
        json={"contentType": ctype},
        headers=auth,
        timeout=30,
    )


def tenant_with_admin(
    api_server: ApiProcess, tenants_ns: str, api: Any, settings: Settings, pool: str
) -> tuple[str, tuple[str, str]]:
    """A signup through the API, provisioned by the operator; its admin then sets a password
    (as after a forgot-password flow) and signs in: a tenant admin, custom:tenant = slug."""
    slug = f"logo-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example.com"
    answer = httpx.post(
        f"{api_server.url}/v1/signups",
        json={"displayName": "Logo Farms", "slug": slug, "adminEmail": email, "plan": "starter"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    Custom(api, tenants_ns).wait_condition("tenants", slug, "CognitoUser", timeout=120)
    password = f"Tenant-{uuid.uuid4().hex[:10]}-9A"
    aws.client("cognito-idp", settings).admin_set_user_password(
        UserPoolId=pool, Username=email, Password=password, Permanent=True
    )
    return slug, (email, password)


@pytest.fixture(scope="module")
def moto_settings(moto: MotoServer) -> Settings:
    return moto.settings(get_settings(), aws_max_attempts=1)


@pytest.fixture(scope="module")
def tenant(
    api_server: ApiProcess,
    tenants_ns: str,
    api: Any,
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
) -> tuple[str, tuple[str, str]]:
    return tenant_with_admin(api_server, tenants_ns, api, moto_settings, aws_env.user_pool_id)


def test_the_post_policy_holds_key_type_size_and_expiry(
    api_server: ApiProcess,
    users: dict[str, tuple[str, str]],
    tenant: tuple[str, tuple[str, str]],
    aws_env: bootstrap.Environment,
) -> None:
    slug, _ = tenant
    asked = dt.datetime.now(dt.UTC)
    answer = ask(api_server, slug, token(api_server, users["admin"]), "image/webp")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert re.fullmatch(rf"raw/{slug}/[0-9a-f-]{{36}}", body["key"]), body["key"]
    assert body["url"].rstrip("/").endswith(aws_env.logo_raw_bucket)
    assert body["maxBytes"] == MAX_BYTES and body["fields"]["key"] == body["key"]
    policy = json.loads(base64.b64decode(body["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": aws_env.logo_raw_bucket} in conditions
    assert ["eq", "$key", body["key"]] in conditions
    assert ["eq", "$Content-Type", "image/webp"] in conditions
    assert ["content-length-range", 1, MAX_BYTES] in conditions
    # Nothing else may loosen it: no starts-with, no second key or type.
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]
    expires = dt.datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.UTC
    )
    assert dt.timedelta(minutes=4) < expires - asked <= dt.timedelta(minutes=5, seconds=5)
    # Two asks, two keys: an upload never overwrites another's object.
    again = ask(api_server, slug, token(api_server, users["admin"]), "image/webp").json()
    assert again["key"] != body["key"]


def test_an_upload_with_it_lands_in_the_raw_bucket(
    api_server: ApiProcess,
    tenant: tuple[str, tuple[str, str]],
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    slug, owner = tenant
    body = ask(api_server, slug, token(api_server, owner)).json()
    posted = httpx.post(
        body["url"],
        data=body["fields"],
        files={"file": ("logo.png", PNG, "image/png")},
        timeout=30,
    )
    assert posted.status_code in (200, 201, 204), posted.text
    head = aws.client("s3", moto_settings).head_object(
        Bucket=aws_env.logo_raw_bucket, Key=body["key"]
    )
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)
    assert head.get("VersionId")  # versioned: the worker makes thumbnails once per version


def test_only_the_tenants_admin_or_a_platform_admin_may_upload(
    api_server: ApiProcess,
    users: dict[str, tuple[str, str]],
    tenant: tuple[str, tuple[str, str]],
    tenants_ns: str,
    api: Any,
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    slug, owner = tenant
    other_slug, other_owner = tenant_with_admin(
        api_server, tenants_ns, api, moto_settings, aws_env.user_pool_id
    )
    assert ask(api_server, slug, {}).status_code == 401
    assert ask(api_server, slug, {"Authorization": "Bearer nonsense"}).status_code == 401
    member = ask(api_server, slug, token(api_server, users["member"]))
    assert member.status_code == 403 and "admin of tenant" in member.json()["detail"]
    # Another tenant's admin may not upload a logo for this one.
    assert ask(api_server, slug, token(api_server, other_owner)).status_code == 403
    assert ask(api_server, other_slug, token(api_server, other_owner)).status_code == 201
    assert ask(api_server, slug, token(api_server, owner)).status_code == 201
    admin = token(api_server, users["admin"])
    assert ask(api_server, slug, admin).status_code == 201
    assert ask(api_server, "no-such-tenant", admin).status_code == 404
    assert ask(api_server, "Bad_Slug", admin).status_code == 422
    # An admin of a tenant that does not exist (yet) gets no upload for it either.
    assert ask(api_server, "no-such-tenant", token(api_server, owner)).status_code == 403


def claims_of(auth: dict[str, str]) -> dict[str, Any]:
    """An id token's claims, unverified (the API verifies them)."""
    payload = auth["Authorization"].split()[1].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_tenant_admin_never_becomes_another_tenants_admin(
    api_server: ApiProcess,
    tenants_ns: str,
    api: Any,
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    """N1, as the attacker did it: A's admin sets custom:tenant = B on themselves with their
    own access token (UpdateUserAttributes), signs in again and asks for B's logo upload.
    The write is refused (the herd-admin client names its WriteAttributes, and the local AWS
    holds them as AWS does); and a token whose custom:tenant says B all the same (written
    by an administrator here, as Cognito's default let any user) still is not B's admin:
    the API asks the Tenant (status.adminSub), not the token."""
    pool = aws_env.user_pool_id
    a, a_admin = tenant_with_admin(api_server, tenants_ns, api, moto_settings, pool)
    b, b_admin = tenant_with_admin(api_server, tenants_ns, api, moto_settings, pool)
    idp = aws.client("cognito-idp", moto_settings)
    signed_in = httpx.post(
        f"{api_server.url}/v1/auth/token",
        json={"username": a_admin[0], "password": a_admin[1]},
        timeout=30,
    ).json()
    with pytest.raises(ClientError) as refused:
        idp.update_user_attributes(
            AccessToken=signed_in["accessToken"],
            UserAttributes=[{"Name": "custom:tenant", "Value": b}],
        )
    assert refused.value.response["Error"]["Code"] == "NotAuthorizedException"
    user = idp.admin_get_user(UserPoolId=pool, Username=a_admin[0])
    attrs = {x["Name"]: x["Value"] for x in user["UserAttributes"]}
    assert attrs["custom:tenant"] == a

    idp.admin_update_user_attributes(
        UserPoolId=pool, Username=a_admin[0], UserAttributes=[{"Name": "custom:tenant", "Value": b}]
    )
    rewritten = token(api_server, a_admin)
    assert claims_of(rewritten)["custom:tenant"] == b  # a valid token that says B
    answer = ask(api_server, b, rewritten)
    assert answer.status_code == 403 and f"admin of tenant '{b}'" in answer.json()["detail"]
    # Still A's admin (the sub the operator recorded), and B's own admin is B's.
    assert ask(api_server, a, rewritten).status_code == 201
    assert ask(api_server, b, token(api_server, b_admin)).status_code == 201
    tenants = Custom(api, tenants_ns)
    assert tenants.get("tenants", a)["status"]["adminSub"] == attrs["sub"]


@pytest.mark.parametrize(
    "ctype", ["image/svg+xml", "text/html", "image/png; charset=utf-8", "image/gif", ""]
)
def test_only_png_jpeg_and_webp_are_offered(
    api_server: ApiProcess, users: dict[str, tuple[str, str]], ctype: str
) -> None:
    auth = token(api_server, users["admin"])
    # The body is refused, whatever the tenant.
    answer = ask(api_server, "anything", auth, ctype)
    assert answer.status_code == 422, answer.text
    assert "contentType" in answer.text


def test_the_api_makes_no_aws_call_for_a_presign(api_server: ApiProcess) -> None:
    """Signing is local: the API's call log holds only the presigned PutObjects it lent
    (and the verification emails that signups with verification on queue, N9)."""
    log = Path(api_server.env["HERD_AWS_CALL_LOG"])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    calls = {(c["service"], c["operation"]) for c in lines}
    assert ("s3", "PutObject") in calls
    assert calls <= {("s3", "PutObject"), ("sqs", "SendMessage")}, calls


# -- in Chromium: the signup page's success view and the admin page offer the upload ------


def raw_keys(settings: Settings, bucket: str, slug: str) -> list[str]:
    found = aws.client("s3", settings).list_objects_v2(Bucket=bucket, Prefix=f"raw/{slug}/")
    return [o["Key"] for o in found.get("Contents", [])]


@pytest.mark.slow
def test_the_signup_page_offers_the_upload_to_the_tenants_admin(
    browser: Browser,
    api_server: ApiProcess,
    api: Any,
    tenants_ns: str,
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
    tmp_path: Path,
) -> None:
    slug = f"web-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example.com"
    page = browser.new_page()
    page.goto(f"{api_server.url}/")
    page.fill("#displayName", "Pictured Farms")
    page.fill("#slug", slug)
    page.fill("#adminEmail", email)
    page.click("#submit")
    expect(page.locator("#logo")).to_be_visible(timeout=15_000)
    expect(page.locator("#logo-email")).to_have_value(email)
    # The admin has set a password (after the welcome email) and signs in right here.
    Custom(api, tenants_ns).wait_condition("tenants", slug, "CognitoUser", timeout=120)
    password = f"Tenant-{uuid.uuid4().hex[:10]}-9A"
    aws.client("cognito-idp", moto_settings).admin_set_user_password(
        UserPoolId=aws_env.user_pool_id, Username=email, Password=password, Permanent=True
    )
    page.fill("#logo-password", "wrong-password")
    page.set_input_files(
        "#logo-file", files=[{"name": "logo.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.click("#logo-upload")
    expect(page.locator("#logo-status")).to_have_text("wrong username or password")
    page.fill("#logo-password", password)
    page.set_input_files(
        "#logo-file", files=[{"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": b"<svg/>"}]
    )
    page.click("#logo-upload")
    expect(page.locator("#logo-status")).to_have_text("PNG, JPEG or WebP only")
    page.set_input_files(
        "#logo-file", files=[{"name": "logo.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.click("#logo-upload")
    expect(page.locator("#logo-status")).to_have_text(
        "uploaded: the thumbnails follow shortly", timeout=15_000
    )
    page.screenshot(path=str(tmp_path / "signup-logo.png"))
    assert len(raw_keys(moto_settings, aws_env.logo_raw_bucket, slug)) == 1


@pytest.mark.slow
def test_the_admin_page_offers_the_upload(
    browser: Browser,
    api_server: ApiProcess,
    users: dict[str, tuple[str, str]],
    tenant: tuple[str, tuple[str, str]],
    moto_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    slug, _ = tenant
    before = raw_keys(moto_settings, aws_env.logo_raw_bucket, slug)
    page = browser.new_page()
    page.goto(f"{api_server.url}/admin#tenant/{slug}")
    page.fill("#username", users["admin"][0])
    page.fill("#password", users["admin"][1])
    page.click("#signin")
    expect(page.locator("#detail")).to_be_visible(timeout=15_000)
    expect(page.locator("#detail-name")).to_contain_text(slug)
    page.set_input_files(
        "#logo-file", files=[{"name": "logo.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.click("#logo-upload")
    expect(page.locator("#logo-status")).to_have_text(
        "uploaded: the thumbnails follow shortly", timeout=15_000
    )
    assert len(raw_keys(moto_settings, aws_env.logo_raw_bucket, slug)) == len(before) + 1
