"""The signup API as a real uvicorn process against the embedded cluster and moto."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd_api.claims import EMAIL, claim_name
from herd_api.signuptokens import Pending, SignupTokens
from herd_api.tenants import digest
from herd_core import aws
from herd_core.constants import GROUP, VERSION
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port
from herd_devkit.settings import Settings

from .conftest import SIGNUP_TOKEN_KEY as TOKEN_KEY
from .helpers import HERD, ApiProcess, Custom, WorkerProcess, wait_for
from .httpserver import LoopbackServer, reply

pytestmark = pytest.mark.usefixtures("live_operator", "worker")


def signup(**overrides: Any) -> dict[str, Any]:
    slug = f"co-{uuid.uuid4().hex[:8]}"
    return {
        "displayName": "Acme Farms",
        "slug": slug,
        "adminEmail": f"owner@{slug}.example.com",
        "plan": "starter",
        **overrides,
    }


def post(api: ApiProcess, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return httpx.post(f"{api.url}/v1/signups", json=body, headers=headers, timeout=30)


def token(api: ApiProcess, who: tuple[str, str]) -> str:
    response = httpx.post(
        f"{api.url}/v1/auth/token", json={"username": who[0], "password": who[1]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["idToken"])


def bearer(api: ApiProcess, who: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(api, who)}"}


ACCEPTED = {"phase": "Accepted", "conditions": []}  # a status URL, to anyone but its owner


def test_signup_creates_a_tenant(
    api_server: ApiProcess, api: Any, tenants_ns: str, users: dict[str, tuple[str, str]]
) -> None:
    body = signup()
    response = post(api_server, body)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "slug": body["slug"],
        "status": f"{api_server.url}/v1/signups/{body['slug']}",
    }
    tenant = Custom(api, tenants_ns).get("tenants", body["slug"])
    assert tenant["spec"] == {**body, "deletionPolicy": "Delete"}

    status = httpx.get(response.json()["status"], timeout=10)
    assert status.status_code == 200
    assert status.json() == {"slug": body["slug"], **ACCEPTED}
    # The operator provisions it; the status endpoint follows along to Ready, for an admin.
    auth = bearer(api_server, users["admin"])
    wait_for(
        lambda: (
            httpx.get(response.json()["status"], headers=auth, timeout=10).json()["phase"]
            == "Ready"
        ),
        90,
        "signup Ready",
    )
    conditions = httpx.get(response.json()["status"], headers=auth, timeout=10).json()["conditions"]
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in conditions if c["type"] == "Ready"
    ).items()


def test_idempotency_key_makes_retries_safe(
    api_server: ApiProcess, api: Any, tenants_ns: str
) -> None:
    body, key = signup(), str(uuid.uuid4())
    first, again = post(api_server, body, key), post(api_server, body, key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    items = Custom(api, tenants_ns).api.list_namespaced_custom_object(
        "platform.herd-itt.com", "v1alpha1", tenants_ns, "tenants"
    )["items"]
    assert [t["metadata"]["name"] for t in items].count(body["slug"]) == 1

    other = post(api_server, signup(), key)  # same key, another signup
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


def test_duplicates_answer_409_for_a_slug_and_never_reveal_an_email(
    api_server: ApiProcess, api: Any, tenants_ns: str
) -> None:
    body = signup()
    assert post(api_server, body).status_code == 202
    same_slug = post(api_server, signup(slug=body["slug"]))
    assert same_slug.status_code == 409
    assert same_slug.json() == {"detail": f"the slug '{body['slug']}' is already taken"}
    # Every field the same, the admin email too (a right guess): the same 409, not a replay.
    guessed = post(api_server, body)
    assert (guessed.status_code, guessed.json()) == (409, same_slug.json())

    # An email that has signed up gets the very answer a new one gets; nothing is created.
    copy = signup(adminEmail=body["adminEmail"].upper())
    fresh = signup()
    same_email, new_email = post(api_server, copy), post(api_server, fresh)
    assert same_email.status_code == new_email.status_code == 202
    assert same_email.headers.keys() == new_email.headers.keys()
    assert same_email.json() == {
        "slug": copy["slug"],
        "status": f"{api_server.url}/v1/signups/{copy['slug']}",
    }
    assert not Custom(api, tenants_ns).exists("tenants", copy["slug"])
    assert Custom(api, tenants_ns).exists("tenants", fresh["slug"])


def test_the_owners_status_shows_phase_and_condition_reasons_only(
    api_server: ApiProcess, api: Any, tenants_ns: str, users: dict[str, tuple[str, str]]
) -> None:
    body = signup()
    assert post(api_server, body).status_code == 202
    url = f"{api_server.url}/v1/signups/{body['slug']}"
    auth = bearer(api_server, users["admin"])
    wait_for(
        lambda: httpx.get(url, headers=auth, timeout=10).json()["conditions"], 60, "conditions"
    )
    # A condition message as a failing step writes it: raw AWS text, another tenant's name.
    leak = {
        "type": "Probe",
        "status": "False",
        "reason": "Failed",
        "message": "AccessDenied for arn:aws:iam::1:role/x; tenant other-co",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }

    def plant() -> bool:
        objects = client.CustomObjectsApi(api)
        tenant = objects.get_namespaced_custom_object(
            GROUP, VERSION, tenants_ns, "tenants", body["slug"]
        )
        conditions = [*(tenant.get("status") or {}).get("conditions", []), leak]
        try:
            objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                tenants_ns,
                "tenants",
                body["slug"],
                {
                    "metadata": {"resourceVersion": tenant["metadata"]["resourceVersion"]},
                    "status": {"conditions": conditions},
                },
            )
        except ApiException as err:
            if err.status == 409:  # the operator wrote meanwhile: read again
                return False
            raise
        return True

    wait_for(plant, 30, "condition planted")
    status = httpx.get(url, headers=auth, timeout=10).json()
    assert set(status) == {"slug", "phase", "conditions"}
    assert all(set(c) == {"type", "status", "reason"} for c in status["conditions"])
    assert {"type": "Probe", "status": "False", "reason": "Failed"} in status["conditions"]
    assert "other-co" not in httpx.get(url, headers=auth, timeout=10).text
    assert httpx.get(url, timeout=10).json() == {"slug": body["slug"], **ACCEPTED}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("adminEmail", "not-an-email"),
        ("slug", "Has_Caps"),
        ("slug", "-dash"),
        ("slug", "ab"),
        ("slug", "admin"),
        ("plan", "platinum"),
        ("displayName", ""),
        ("displayName", "x" * 101),
    ],
)
def test_bad_input_answers_422(api_server: ApiProcess, field: str, value: str) -> None:
    response = post(api_server, signup(**{field: value}))
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


def test_an_unknown_signup_answers_as_any_other_and_404_to_an_admin(
    api_server: ApiProcess, users: dict[str, tuple[str, str]]
) -> None:
    url = f"{api_server.url}/v1/signups/nobody-here"
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"slug": "nobody-here", **ACCEPTED}
    admin = httpx.get(url, headers=bearer(api_server, users["admin"]), timeout=10)
    assert admin.status_code == 404
    assert admin.json() == {"detail": "no signup 'nobody-here'"}


def test_admin_endpoints_need_an_admin_token(
    api_server: ApiProcess,
    users: dict[str, tuple[str, str]],
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    url = f"{api_server.url}/v1/tenants"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.delete(f"{url}/x", timeout=10).status_code == 401
    garbage = httpx.get(url, headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
    assert garbage.status_code == 401

    # Signed by someone else's key, with the right issuer: still refused.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {
            "iss": f"https://cognito-idp.eu-west-1.amazonaws.com/{aws_env.user_pool_id}",
            "token_use": "id",
            "aud": aws_env.admin_client_id,
            "exp": 4102444800,
            "cognito:groups": ["admins"],
        },
        key,
        algorithm="RS256",
        headers={"kid": "dummy"},
    )
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=10).status_code == 401
    )

    member = token(api_server, users["member"])
    refused = httpx.get(url, headers={"Authorization": f"Bearer {member}"}, timeout=10)
    assert refused.status_code == 403
    assert "admins" in refused.json()["detail"]

    # A real admin token issued to another app client is refused too.
    idp = aws.client("cognito-idp", aws_settings)
    other = idp.create_user_pool_client(
        UserPoolId=aws_env.user_pool_id,
        ClientName="other",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
    )
    result = idp.initiate_auth(
        ClientId=other["UserPoolClient"]["ClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": users["admin"][0], "PASSWORD": users["admin"][1]},
    )
    wrong = httpx.get(
        url,
        headers={"Authorization": "Bearer " + result["AuthenticationResult"]["IdToken"]},
        timeout=10,
    )
    assert wrong.status_code == 401
    assert "another app client" in wrong.json()["detail"]


def test_admin_lists_pages_and_deletes(
    api_server: ApiProcess, users: dict[str, tuple[str, str]], api: Any, tenants_ns: str
) -> None:
    bodies = [signup(), signup()]
    for body in bodies:
        assert post(api_server, body).status_code == 202
    auth = {"Authorization": f"Bearer {token(api_server, users['admin'])}"}
    seen: list[str] = []
    url: str | None = f"{api_server.url}/v1/tenants?limit=1"
    while url:
        page = httpx.get(url, headers=auth, timeout=10)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 1
        seen += [t["slug"] for t in page.json()["items"]]
        cont = page.json()["continue"]
        url = f"{api_server.url}/v1/tenants?limit=1&continue={cont}" if cont else None
    assert {b["slug"] for b in bodies} <= set(seen)
    assert len(seen) == len(set(seen))

    gone = bodies[0]["slug"]
    response = httpx.delete(f"{api_server.url}/v1/tenants/{gone}", headers=auth, timeout=10)
    assert response.status_code == 202
    Custom(api, tenants_ns).wait_gone("tenants", gone, timeout=90)
    assert (
        httpx.delete(f"{api_server.url}/v1/tenants/{gone}", headers=auth, timeout=10).status_code
        == 404
    )


def test_sign_in_with_a_wrong_password(
    api_server: ApiProcess, users: dict[str, tuple[str, str]]
) -> None:
    response = httpx.post(
        f"{api_server.url}/v1/auth/token",
        json={"username": users["admin"][0], "password": "wrong"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong username or password"}


def test_probes_metrics_cors(api_server: ApiProcess) -> None:
    assert httpx.get(f"{api_server.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{api_server.url}/readyz", timeout=10).json() == {"status": "ready"}
    answer = httpx.get(f"{api_server.url}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    metrics = answer.text
    assert 'herd_api_requests_total{method="GET",route="/readyz",status="200"}' in metrics
    preflight = httpx.options(
        f"{api_server.url}/v1/signups",
        timeout=10,
        headers={"Origin": "https://console.herd-itt.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "https://console.herd-itt.com"
    evil = httpx.options(
        f"{api_server.url}/v1/signups",
        timeout=10,
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in evil.headers


def test_logs_are_json_without_emails(api_server: ApiProcess) -> None:
    body = signup()
    assert post(api_server, body).status_code == 202
    lines = [
        json.loads(line) for line in api_server.log_text().splitlines() if line.startswith("{")
    ]
    assert any(
        rec.get("message") == "signup accepted" and rec.get("slug") == body["slug"] for rec in lines
    )
    assert body["adminEmail"] not in api_server.log_text()


def test_signups_are_rate_limited_per_client(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    limited = ApiProcess(
        env={**api_env, "HERD_SIGNUP_BURST": "2", "HERD_SIGNUP_RATE": "0.01"},
        log=tmp_path_factory.mktemp("api-limited") / "api.log",
    ).start()
    try:
        codes = [post(limited, signup(plan="bogus")).status_code for _ in range(3)]
        assert codes[:2] == [422, 422]  # counted before validation answers
        assert codes[2] == 429
        third = post(limited, signup())
        assert third.status_code == 429
        assert int(third.headers["Retry-After"]) >= 1
    finally:
        limited.stop()


def test_spoofed_forwarded_for_is_still_rate_limited(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Behind one proxy (the ALB) the client writes the left of X-Forwarded-For and the
    proxy appends the address it saw: only that right-most entry counts."""
    limited = ApiProcess(
        env={
            **api_env,
            "HERD_SIGNUP_BURST": "2",
            "HERD_SIGNUP_RATE": "0.01",
            "HERD_TRUSTED_PROXIES": "1",
        },
        log=tmp_path_factory.mktemp("api-proxied") / "api.log",
    ).start()
    try:

        def via_alb(spoofed: str, seen_by_alb: str) -> int:
            response = httpx.post(
                f"{limited.url}/v1/signups",
                json=signup(plan="bogus"),
                headers={"X-Forwarded-For": f"{spoofed}, {seen_by_alb}"},
                timeout=30,
            )
            return response.status_code

        codes = [via_alb(f"198.51.100.{i}", "203.0.113.7") for i in range(20)]
        assert codes[:2] == [422, 422]
        assert set(codes[2:]) == {429}
        # Another client behind the same ALB has a bucket of its own.
        assert via_alb("198.51.100.1", "203.0.113.8") == 422
        # An IPv6 client cannot vary its address within its /64 either.
        v6 = [via_alb("198.51.100.1", f"2001:db8:1:2::{i:x}") for i in range(4)]
        assert v6 == [422, 422, 429, 429]
    finally:
        limited.stop()


def test_without_trusted_proxies_the_header_is_ignored(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    limited = ApiProcess(
        env={**api_env, "HERD_SIGNUP_BURST": "2", "HERD_SIGNUP_RATE": "0.01"},
        log=tmp_path_factory.mktemp("api-direct") / "api.log",
    ).start()
    try:
        codes = [
            httpx.post(
                f"{limited.url}/v1/signups",
                json=signup(plan="bogus"),
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
                timeout=30,
            ).status_code
            for i in range(4)
        ]
        assert codes == [422, 422, 429, 429]
    finally:
        limited.stop()


def test_large_bodies_are_refused_before_they_are_read(api_server: ApiProcess) -> None:
    big = b'{"displayName": "' + b"x" * (1024 * 1024) + b'"}'
    response = httpx.post(
        f"{api_server.url}/v1/signups",
        content=big,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"displayName": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    chunked = httpx.post(
        f"{api_server.url}/v1/signups",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 413
    # A body under the limit is read and validated as always.
    assert post(api_server, signup(plan="bogus")).status_code == 422


def test_the_api_refuses_to_start_without_the_admin_client(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [HERD, "api", "run", "--port", str(free_port())],
        env={**api_env, "HERD_ADMIN_CLIENT_ID": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "HERD_ADMIN_CLIENT_ID is required" in result.stderr


# -- L5: whether an email has signed up shows nowhere ---------------------------------------
def test_a_known_email_cannot_be_told_from_a_new_one(
    api_server: ApiProcess, api: Any, tenants_ns: str, users: dict[str, tuple[str, str]]
) -> None:
    """A prober signs up with someone's address under a fresh slug of its own and reads
    every answer it can get: the POST's, the status URL's (at once and after the operator
    has provisioned the real ones), a reuse of its Idempotency-Key, a taken slug."""
    first = signup()
    assert post(api_server, first).status_code == 202
    objects = Custom(api, tenants_ns)
    probe, fresh = signup(adminEmail=first["adminEmail"].upper()), signup()
    probe_key, fresh_key = str(uuid.uuid4()), str(uuid.uuid4())
    known, new = post(api_server, probe, probe_key), post(api_server, fresh, fresh_key)
    assert known.status_code == new.status_code == 202
    assert known.headers.keys() == new.headers.keys()
    for answer, body in ((known, probe), (new, fresh)):
        assert answer.json() == {
            "slug": body["slug"],
            "status": f"{api_server.url}/v1/signups/{body['slug']}",
        }
    assert not objects.exists("tenants", probe["slug"])  # nothing made for the probe

    def public(answer: httpx.Response) -> tuple[int, dict[str, Any]]:
        seen = httpx.get(answer.json()["status"], timeout=10)
        return seen.status_code, {k: v for k, v in seen.json().items() if k != "slug"}

    assert public(known) == public(new) == (200, ACCEPTED)
    # Still the same once the real signup has progressed (its progress is its owner's).
    objects.wait_condition("tenants", fresh["slug"], timeout=90)
    assert public(known) == public(new) == (200, ACCEPTED)
    member = bearer(api_server, users["member"])  # signed in, but owns neither
    for answer in (known, new):
        seen = httpx.get(answer.json()["status"], headers=member, timeout=10)
        assert seen.status_code == 200 and seen.json()["phase"] == "Accepted"

    # Its key reused for another signup: 422 either way, as the key is claimed either way.
    for key in (probe_key, fresh_key):
        reused = post(api_server, signup(), key)
        assert reused.status_code == 422, reused.text
        assert "Idempotency-Key" in reused.json()["detail"]
    # ... and the very request again is the same 202.
    assert post(api_server, probe, probe_key).json() == known.json()

    # A taken slug is 409 for a known email as for a new one.
    taken_known = post(api_server, signup(slug=fresh["slug"], adminEmail=first["adminEmail"]))
    taken_new = post(api_server, signup(slug=fresh["slug"]))
    assert taken_known.status_code == taken_new.status_code == 409
    assert taken_known.json() == taken_new.json()


def test_the_tenants_admin_sees_its_progress_and_no_other(
    api_server: ApiProcess,
    api: Any,
    tenants_ns: str,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    from .test_logo_uploads import tenant_with_admin

    slug, owner = tenant_with_admin(api_server, tenants_ns, api, aws_settings, aws_env.user_pool_id)
    auth = bearer(api_server, owner)
    mine = httpx.get(f"{api_server.url}/v1/signups/{slug}", headers=auth, timeout=10)
    assert mine.status_code == 200
    assert mine.json()["phase"] != "Accepted"
    assert "CognitoUser" in {c["type"] for c in mine.json()["conditions"]}
    other = signup()
    assert post(api_server, other).status_code == 202
    theirs = httpx.get(f"{api_server.url}/v1/signups/{other['slug']}", headers=auth, timeout=10)
    assert theirs.json() == {"slug": other["slug"], **ACCEPTED}
    # A token that does not verify is 401, whatever the slug.
    forged = {"Authorization": "Bearer not.a.jwt"}
    for name in (slug, other["slug"], "nobody-here"):
        refused = httpx.get(f"{api_server.url}/v1/signups/{name}", headers=forged, timeout=10)
        assert refused.status_code == 401


# -- N9: a budget of all clients together, and the verification hook ------------------------
def test_a_global_budget_caps_signups_from_all_clients(
    api_env: dict[str, str], api: Any, tenants_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Many addresses, one signup each: the per-client limit never bites, the global one
    does. Malformed requests do not spend it; a known email meets it as a new one does."""
    limited = ApiProcess(
        env={
            **api_env,
            "HERD_SIGNUP_BURST": "2",  # per client: never reached below
            "HERD_TRUSTED_PROXIES": "1",
            "HERD_SIGNUP_GLOBAL_BURST": "3",
            "HERD_SIGNUP_GLOBAL_RATE": "0.001",
            "HERD_SIGNUP_CLIENT_RATE": "0.00005",  # at most a tenth of the global rate
            "HERD_SIGNUP_CLIENT_BURST": "3",  # and no more than its burst
        },
        log=tmp_path_factory.mktemp("api-global") / "api.log",
    )
    limited.env["HERD_PUBLIC_URL"] = limited.url
    limited.start()
    clients = iter(f"203.0.113.{i}" for i in range(1, 100))

    def from_new_client(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{limited.url}/v1/signups",
            json=body,
            headers={"X-Forwarded-For": next(clients)},
            timeout=30,
        )

    try:
        assert [from_new_client(signup(plan="bogus")).status_code for _ in range(5)] == [422] * 5
        bodies = [signup() for _ in range(3)]
        assert [from_new_client(b).status_code for b in bodies] == [202] * 3
        spent = from_new_client(signup())
        assert spent.status_code == 429
        assert spent.json() == {
            "detail": "signups are paused: too many from all clients together; try again later"
        }
        assert int(spent.headers["Retry-After"]) >= 1
        known = from_new_client(signup(adminEmail=bodies[0]["adminEmail"]))
        assert (known.status_code, known.json()) == (429, spent.json())
        objects = Custom(api, tenants_ns)
        assert all(objects.exists("tenants", b["slug"]) for b in bodies)
    finally:
        limited.stop()


def test_one_client_and_one_address_get_only_their_share(
    api_env: dict[str, str],
    tenants_ns: str,
    worker: WorkerProcess,
    moto: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A client at its limit is refused from its own share of the signups and spends none of
    the others'; signups from many clients for one address, each under another name, send
    it its share of verification emails and no more (each answered as any signup is)."""
    shared = ApiProcess(
        env={
            **api_env,
            "HERD_SIGNUP_EMAIL_VERIFICATION": "true",
            "HERD_SIGNUP_TOKEN_KEY": TOKEN_KEY,
            "HERD_TRUSTED_PROXIES": "1",
            "HERD_SIGNUP_CLIENT_BURST": "2",
            "HERD_SIGNUP_RECIPIENT_BURST": "2",
        },
        log=tmp_path_factory.mktemp("api-shares") / "api.log",
    )
    shared.env["HERD_PUBLIC_URL"] = shared.url
    shared.start()

    def from_(address: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{shared.url}/v1/signups",
            json=body,
            headers={"X-Forwarded-For": address},
            timeout=30,
        )

    try:
        greedy = [from_("203.0.113.50", signup()) for _ in range(3)]
        assert [a.status_code for a in greedy] == [202, 202, 429]
        assert greedy[2].json() == {"detail": "too many signups from this client; try again later"}
        assert from_("203.0.113.51", signup()).status_code == 202  # the others' budget is whole

        victim = f"victim-{uuid.uuid4().hex[:8]}@example.org"
        bombs = [
            from_(f"198.51.100.{i}", signup(adminEmail=victim, displayName=f"Pay now #{i}"))
            for i in range(4)
        ]
        assert {(b.status_code, b.json()["verifyEmail"]) for b in bombs} == {(202, True)}
        # A later signup's email as the witness that the queue has been worked through.
        witness = signup()
        assert from_("198.51.100.99", witness).status_code == 202
        the_link(moto, witness["adminEmail"])
        sent = wait_for(lambda: len(emails_to(moto, victim)) >= 2 and emails_to(moto, victim), 60)
        assert len(sent) == 2, [m["data"]["displayName"] for m in sent]
        assert shared.log_text().count("its address had its share") == 2
        assert victim not in shared.log_text()
    finally:
        shared.stop()


@dataclass
class SiteVerify(LoopbackServer):
    """A CAPTCHA service's siteverify endpoint: token `human` passes, `down` is a 500,
    anything else is refused."""

    secret: str = "verify-secret"
    asked: list[dict[str, str]] = field(default_factory=list)

    def start(self) -> SiteVerify:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stub.asked.append(form)
                if form.get("response") == "down":
                    reply(self, 500, b"", [])
                    return
                ok = form.get("secret") == stub.secret and form.get("response") == "human"
                verdict = {"success": ok, **({} if ok else {"error-codes": ["invalid"]})}
                reply(
                    self, 200, json.dumps(verdict).encode(), [("Content-Type", "application/json")]
                )

        self.serve(Handler)
        return self


def test_a_refusing_verifier_stops_a_signup_before_anything_is_made(
    api_env: dict[str, str], api: Any, tenants_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stub = SiteVerify().start()
    verified = ApiProcess(
        env={
            **api_env,
            "HERD_SIGNUP_VERIFY_URL": f"{stub.url}/siteverify",
            "HERD_SIGNUP_VERIFY_SECRET": stub.secret,
            "HERD_TRUSTED_PROXIES": "1",
        },
        log=tmp_path_factory.mktemp("api-verified") / "api.log",
    )
    verified.env["HERD_PUBLIC_URL"] = verified.url
    objects = Custom(api, tenants_ns)

    def attempt(body: dict[str, Any], token: str | None) -> httpx.Response:
        headers = {"X-Verification-Token": token} if token else {}
        return httpx.post(f"{verified.url}/v1/signups", json=body, headers=headers, timeout=30)

    try:
        verified.start()
        bot = signup()
        refused = attempt(bot, "robot")
        assert refused.status_code == 403
        assert refused.json() == {"detail": "signup verification failed"}
        assert stub.asked[-1] == {
            "secret": stub.secret,
            "response": "robot",
            "remoteip": "127.0.0.1",
        }
        # Behind the proxy, an IPv6 client: the service is told its address, not the /64
        # the rate limit counts it by.
        behind = httpx.post(
            f"{verified.url}/v1/signups",
            json=bot,
            headers={"X-Verification-Token": "robot", "X-Forwarded-For": "2001:db8::1234"},
            timeout=30,
        )
        assert behind.status_code == 403
        assert stub.asked[-1]["remoteip"] == "2001:db8::1234"
        asked = len(stub.asked)
        assert attempt(bot, None).status_code == 403  # no token: refused without a call
        assert len(stub.asked) == asked
        unavailable = attempt(bot, "down")
        assert unavailable.status_code == 503  # fail closed
        assert "Retry-After" in unavailable.headers
        assert not objects.exists("tenants", bot["slug"])

        human = attempt(bot, "human")
        assert human.status_code == 202, human.text
        assert objects.exists("tenants", bot["slug"])
        # Refused before the email is looked at: a known one is refused alike.
        again = attempt(signup(adminEmail=bot["adminEmail"]), "robot")
        assert (again.status_code, again.json()) == (403, refused.json())
    finally:
        verified.stop()
        stub.stop()


# -- N9: a signup is held until the link in its verification email is followed ---------------
def emails_to(moto: MotoServer, address: str) -> list[dict[str, Any]]:
    """What SES (moto) sent to `address`, each with its template data parsed."""
    return [
        {**m, "data": json.loads(m["template_data"])}
        for m in moto.data()["ses"].get("TemplateMessage", [])
        if address in m["destinations"]["ToAddresses"]
    ]


def the_link(moto: MotoServer, address: str) -> str:
    """The one verification email's link to `address`, once the worker has sent it."""
    sent = wait_for(
        lambda: [m for m in emails_to(moto, address) if "verifyURL" in m["data"]],
        60,
        f"the verification email to {address}",
    )
    assert len(sent) == 1, sent
    return str(sent[0]["data"]["verifyURL"])


def follow(api: ApiProcess, url: str) -> httpx.Response:
    """What the signup page does with a link: the token after #verify/ is posted."""
    assert url.startswith(f"{api.url}/#verify/"), url
    page = httpx.get(url.split("#")[0], timeout=10)
    assert page.status_code == 200 and "/v1/signups/verify" in page.text
    return httpx.post(
        f"{api.url}/v1/signups/verify", json={"token": url.split("#verify/")[1]}, timeout=30
    )


def has_cognito_user(settings: Settings, pool: str, email: str) -> bool:
    idp = aws.client("cognito-idp", settings)
    try:
        idp.admin_get_user(UserPoolId=pool, Username=email)
    except idp.exceptions.UserNotFoundException:
        return False
    return True


def test_a_signup_makes_nothing_until_the_link_in_its_one_email_is_followed(
    verifying_api: ApiProcess,
    worker: WorkerProcess,
    moto: MotoServer,
    api: Any,
    tenants_ns: str,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
) -> None:
    body, key = signup(), str(uuid.uuid4())
    email, objects = body["adminEmail"], Custom(api, tenants_ns)
    answer = post(verifying_api, body, key)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "slug": body["slug"],
        "status": f"{verifying_api.url}/v1/signups/{body['slug']}",
        "verifyEmail": True,
    }
    url = the_link(moto, email)
    (sent,) = emails_to(moto, email)
    assert sent["template"].endswith("signup-verification")
    assert {k: sent["data"][k] for k in ("displayName", "slug", "plan")} == {
        k: body[k] for k in ("displayName", "slug", "plan")
    }
    # The email is all there is: no Tenant, no claim of the email, no Cognito user.
    assert not objects.exists("tenants", body["slug"])
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(api).read_namespaced_config_map(claim_name(EMAIL, email), tenants_ns)
    assert missing.value.status == 404
    assert not has_cognito_user(aws_settings, aws_env.user_pool_id, email)

    # The same signup again (a retry): the same answer and the same job, which the worker
    # drops as sent; never a second email.
    assert post(verifying_api, body, key).json() == answer.json()
    job = f"signup-{digest(url.split('#verify/')[1])}"
    wait_for(
        lambda: f"job {job} already sent; dropping the duplicate" in worker.log_text(),
        60,
        "the retry's job dropped as sent",
    )
    assert not objects.exists("tenants", body["slug"])

    # The link makes the Tenant, as a signup without verification does; a second click
    # finds it and answers the same.
    first = follow(verifying_api, url)
    assert first.status_code == 202, first.text
    assert first.json() == {"slug": body["slug"], "status": answer.json()["status"]}
    assert objects.get("tenants", body["slug"])["spec"] == {**body, "deletionPolicy": "Delete"}
    second = follow(verifying_api, url)
    assert (second.status_code, second.json()) == (202, first.json())
    objects.wait_condition("tenants", body["slug"], "WelcomeEmailSent", timeout=120)
    assert has_cognito_user(aws_settings, aws_env.user_pool_id, email)
    templates = sorted(m["template"] for m in emails_to(moto, email))
    assert len(templates) == 2 and templates[1].endswith("welcome"), templates
    # Its Idempotency-Key is claimed as a signup's is: another signup with it is 422.
    reused = post(verifying_api, signup(), key)
    assert reused.status_code == 422, reused.text
    assert "signup held for email verification" in verifying_api.log_text()
    assert email not in verifying_api.log_text() and TOKEN_KEY not in verifying_api.log_text()


def test_a_link_makes_its_tenant_once_even_after_an_admin_deletes_it(
    verifying_api: ApiProcess,
    worker: WorkerProcess,
    moto: MotoServer,
    api: Any,
    tenants_ns: str,
    users: dict[str, tuple[str, str]],
) -> None:
    """Before: the link, good for a day, made the deleted Tenant again (its Cognito user,
    its welcome email) each time it was followed."""
    body, objects = signup(), Custom(api, tenants_ns)
    assert post(verifying_api, body).status_code == 202
    url = the_link(moto, body["adminEmail"])
    assert follow(verifying_api, url).status_code == 202
    objects.wait_condition("tenants", body["slug"], "WelcomeEmailSent", timeout=120)
    admin = bearer(verifying_api, users["admin"])
    deleted = httpx.delete(
        f"{verifying_api.url}/v1/tenants/{body['slug']}", headers=admin, timeout=30
    )
    assert deleted.status_code == 202
    objects.wait_gone("tenants", body["slug"], timeout=90)
    again = follow(verifying_api, url)
    assert (again.status_code, again.json()) == (
        410,
        {"detail": "this verification link has been used already: sign up again"},
    )
    assert not objects.exists("tenants", body["slug"])
    # Recorded by the link's digest in a ConfigMap named after its expiry, nothing else.
    pending = SignupTokens(TOKEN_KEY, 86_400).read(url.split("#verify/")[1])
    used = client.CoreV1Api(api).read_namespaced_config_map(
        f"signup-links-{pending.expires}", tenants_ns
    )
    assert used.data[digest(url.split("#verify/")[1])] == body["slug"]
    assert body["adminEmail"] not in json.dumps(used.data)


def test_a_forged_changed_or_expired_link_is_refused(
    verifying_api: ApiProcess, api: Any, tenants_ns: str
) -> None:
    objects = Custom(api, tenants_ns)
    ours, theirs = SignupTokens(TOKEN_KEY, 86_400), SignupTokens("x" * 40, 86_400)
    body = signup()
    good = ours.token(ours.issue(body, None))
    version, _, mac = good.split(".")
    other = ours.token(ours.issue({**body, "plan": "enterprise"}, None)).split(".")[1]
    for bad in (
        theirs.token(theirs.issue(body, None)),  # signed with another key
        f"{version}.{other}.{mac}",  # another signup under a real signature
        good[:-3],
        "not-a-token",
    ):
        refused = httpx.post(f"{verifying_api.url}/v1/signups/verify", json={"token": bad})
        assert (refused.status_code, refused.json()) == (
            400,
            {"detail": "this verification link is not valid"},
        ), bad
    late = Pending(body, None, 1_000_000_000)  # signed with the key, expired in 2001
    expired = httpx.post(f"{verifying_api.url}/v1/signups/verify", json={"token": ours.token(late)})
    assert (expired.status_code, expired.json()) == (
        410,
        {"detail": "this verification link has expired: sign up again"},
    )
    assert not objects.exists("tenants", body["slug"])


def test_with_verification_a_known_email_cannot_be_told_from_a_new_one(
    api_server: ApiProcess,
    verifying_api: ApiProcess,
    moto: MotoServer,
    api: Any,
    tenants_ns: str,
) -> None:
    """L5 still: the POST's answer is the same for a known address and a new one (each gets
    its email); only the address's owner, following the link, learns it has a tenant."""
    first = signup()
    assert post(api_server, first).status_code == 202  # a Tenant holds this email
    objects = Custom(api, tenants_ns)
    wait_for(lambda: objects.exists("tenants", first["slug"]), 30, "the first Tenant")
    probe, fresh = signup(adminEmail=first["adminEmail"].upper()), signup()
    known, new = post(verifying_api, probe), post(verifying_api, fresh)
    assert known.status_code == new.status_code == 202
    assert known.headers.keys() == new.headers.keys()
    for answer, body in ((known, probe), (new, fresh)):
        assert answer.json() == {
            "slug": body["slug"],
            "status": f"{verifying_api.url}/v1/signups/{body['slug']}",
            "verifyEmail": True,
        }
        seen = httpx.get(answer.json()["status"], timeout=10)
        assert (seen.status_code, seen.json()) == (200, {"slug": body["slug"], **ACCEPTED})
    # A taken slug is 409 for a known email as for a new one.
    taken_known = post(
        verifying_api,
        signup(slug=first["slug"], adminEmail=first["adminEmail"], displayName="Copycat"),
    )
    taken_new = post(verifying_api, signup(slug=first["slug"], displayName="Copycat"))
    assert (taken_known.status_code, taken_known.json()) == (409, taken_new.json())
    # Every field of the tenant's, its admin email too (a right guess): 409 as well.
    guessed = post(verifying_api, first)
    assert (guessed.status_code, guessed.json()) == (409, taken_new.json())
    # The owner of the known address follows its link: told, and nothing is made.
    told = follow(verifying_api, the_link(moto, first["adminEmail"]))
    assert (told.status_code, told.json()) == (
        409,
        {"detail": "this address has signed up already: sign in to its tenant"},
    )
    assert not objects.exists("tenants", probe["slug"])
    assert follow(verifying_api, the_link(moto, fresh["adminEmail"])).status_code == 202


def test_the_api_refuses_to_start_with_email_verification_but_no_key(
    api_env: dict[str, str],
) -> None:
    for key in ("", "too-short"):
        result = subprocess.run(
            [HERD, "api", "run", "--port", str(free_port())],
            env={**api_env, "HERD_SIGNUP_EMAIL_VERIFICATION": "true", "HERD_SIGNUP_TOKEN_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "HERD_SIGNUP_TOKEN_KEY is required" in result.stderr
        assert not key or key not in result.stderr


def test_the_api_refuses_to_start_when_one_client_could_take_every_signup(
    api_env: dict[str, str],
) -> None:
    """The old defaults (one client at 1/s, all clients at 0.1/s): refused, in one line that
    says why, with no traceback and no setting's value (one of them may be a secret)."""
    secret = "a-signup-token-key-that-must-never-be-printed"
    result = subprocess.run(
        [HERD, "api", "run", "--port", str(free_port())],
        env={
            **api_env,
            "HERD_SIGNUP_CLIENT_RATE": "1",
            "HERD_SIGNUP_GLOBAL_RATE": "0.1",
            "HERD_SIGNUP_TOKEN_KEY": secret,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "herd: bad setting (settings): Value error, HERD_SIGNUP_CLIENT_RATE must be at most a "
        "tenth of HERD_SIGNUP_GLOBAL_RATE: one client at its limit would otherwise take the "
        "signups of everyone else"
    ]
    assert secret not in result.stdout + result.stderr
