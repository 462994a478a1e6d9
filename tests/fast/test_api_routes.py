"""The signup API's routes in this process: FastAPI's TestClient, a fake TenantStore, and
Cognito in moto in-process (admin sign-in and the tokens it issues). tests/test_api.py does
the same through the real uvicorn process, cluster and moto server."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jwt
import kubernetes.client
import pytest
from fastapi.testclient import TestClient

from herd_api.api import deps
from herd_api.claims import EMAIL, Claims, claim_name
from herd_api.core import config
from herd_api.core.security import Verifier
from herd_api.main import create_app
from herd_api.signuptokens import Pending, SignupTokens
from herd_api.tenants import EMAIL_LABEL, KEY_LABEL, digest
from herd_api.verifymail import Unavailable, VerificationMail
from herd_core import aws as aws_clients
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from ..helpers import wait_for
from .fakes import FakeTenantStore, fake_claims, in_process_aws

ADMIN = ("boss@herd-itt.com", "Adm1n-Passw0rd!")
MEMBER = ("member@herd-itt.com", "Memb3r-Passw0rd!")
SIGNUP = {"displayName": "Acme Farms", "slug": "acme", "adminEmail": "A@Acme.Example.com"}


class MotoJWKS:
    """The keys moto signs Cognito tokens with, read from moto's package rather than fetched
    from a server (what PyJWKClient would do)."""

    def __init__(self) -> None:
        raw = (files("moto.cognitoidp") / "resources" / "jwks-public.json.gz").read_bytes()
        self.keys = jwt.PyJWKSet.from_dict(json.loads(gzip.decompress(raw)))

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        return self.keys[jwt.get_unverified_header(token)["kid"]]


def _clear_caches() -> None:
    for cached in (
        config.get_settings,
        deps.get_kube,
        deps.get_store,
        deps.get_claims,
        deps.get_verifier,
        deps.get_signup_limiter,
        deps.get_signup_budget,
        deps.get_signup_tokens,
        deps.get_verification_mail,
    ):
        cached.cache_clear()


@dataclass
class Cloud:
    """One moto for the module (made once: a bootstrap costs a second), with an admin and a
    member in the pool and their id tokens from the API's own sign-in route."""

    settings: Settings
    side: bootstrap.Environment
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with in_process_aws() as settings:
        side = bootstrap.bootstrap(settings)
        _user(settings, side.user_pool_id, ADMIN, ("admins",))
        _user(settings, side.user_pool_id, MEMBER, ())
        cloud = Cloud(settings, side, {})
        with _environment(cloud, tmp_path_factory.mktemp("api")):
            app = create_app()
            with TestClient(app) as client:
                for role, (username, password) in (("admin", ADMIN), ("member", MEMBER)):
                    answer = client.post(
                        "/v1/auth/token", json={"username": username, "password": password}
                    )
                    assert answer.status_code == 200, answer.text
                    cloud.tokens[role] = answer.json()["idToken"]
        yield cloud


@contextmanager
def _environment(cloud: Cloud, folder: Path, **extra: str) -> Iterator[None]:
    """The API's environment, as its chart gives it; a kubeconfig that is never dialled."""
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: none, user: {token: unused}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
    )
    env = {
        **cloud.side.env(),
        "KUBECONFIG": str(kubeconfig),
        "HERD_PUBLIC_URL": "https://signup.example.com/",
        "HERD_SIGNUP_BURST": "1000",
        "HERD_SIGNUP_CLIENT_BURST": "200",  # all from one client, within the global budget
        "HERD_AWS_MAX_ATTEMPTS": "1",
        # Tenants at once (the provisioning path); the verification tests turn it on.
        "HERD_SIGNUP_EMAIL_VERIFICATION": "false",
        **extra,
    }
    # create_app loads the kubeconfig into the client's process-wide default: put it back.
    default = kubernetes.client.Configuration.get_default_copy()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        _clear_caches()
        try:
            yield
        finally:
            _clear_caches()
            kubernetes.client.Configuration.set_default(default)


@pytest.fixture
def store() -> FakeTenantStore:
    return FakeTenantStore()


@pytest.fixture
def claims() -> Claims:
    return fake_claims()


def app_client(cloud: Cloud, store: FakeTenantStore, claims: Claims) -> TestClient:
    """The app as `herd api run` builds it, its store and token verifier overridden."""
    app = create_app()
    settings = config.get_settings()
    verifier = Verifier.for_pool(
        settings.aws_region, cloud.side.user_pool_id, cloud.side.admin_client_id
    )
    verifier.__dict__["_jwks"] = MotoJWKS()  # its cached_property, filled in advance
    app.dependency_overrides[deps.store_dep] = lambda: store
    app.dependency_overrides[deps.claims_dep] = lambda: claims
    app.dependency_overrides[deps.get_verifier] = lambda: verifier
    return TestClient(app)


@pytest.fixture
def client(
    cloud: Cloud, store: FakeTenantStore, claims: Claims, tmp_path: Path
) -> Iterator[TestClient]:
    with _environment(cloud, tmp_path), app_client(cloud, store, claims) as test_client:
        yield test_client


@pytest.fixture
def tokens(cloud: Cloud) -> dict[str, str]:
    return cloud.tokens


def _user(settings: Settings, pool: str, who: tuple[str, str], groups: tuple[str, ...]) -> None:
    idp = aws_clients.client("cognito-idp", settings)
    idp.admin_create_user(
        UserPoolId=pool,
        Username=who[0],
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": who[0]}],
    )
    idp.admin_set_user_password(UserPoolId=pool, Username=who[0], Password=who[1], Permanent=True)
    for group in groups:
        idp.admin_add_user_to_group(UserPoolId=pool, Username=who[0], GroupName=group)


def signup(client: TestClient, key: str | None = None, **changes: Any) -> Any:
    body = {**SIGNUP, "plan": "starter", **changes}
    return client.post("/v1/signups", json=body, headers={"Idempotency-Key": key} if key else {})


# -- probes and pages -----------------------------------------------------------------------
def test_probes_and_pages(client: TestClient, store: FakeTenantStore) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    store.up = False
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200  # alive, though not ready
    assert "<form" in client.get("/").text
    assert client.get("/admin").status_code == 200
    assert "herd_api_requests_total" in client.get("/metrics").text


# -- signups --------------------------------------------------------------------------------
def test_a_signup_creates_one_tenant_and_reports_its_progress(
    client: TestClient, store: FakeTenantStore, tokens: dict[str, str]
) -> None:
    answer = signup(client)
    assert answer.status_code == 202
    assert answer.json() == {
        "slug": "acme",
        "status": "https://signup.example.com/v1/signups/acme",
    }
    tenant = store.objects["acme"]
    assert tenant["spec"]["adminEmail"] == "a@acme.example.com"  # lowercased
    assert tenant["metadata"]["labels"][EMAIL_LABEL] == digest("a@acme.example.com")
    assert "a@acme" not in json.dumps(tenant["metadata"])  # only digests in labels
    # L5: not signed in, every slug reads "Accepted", made or not; its progress is for the
    # tenant's admin and platform admins.
    accepted = {"phase": "Accepted", "conditions": []}
    for slug in ("acme", "nobody"):
        assert client.get(f"/v1/signups/{slug}").json() == {"slug": slug, **accepted}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.get("/v1/signups/acme", headers=admin).json() == {
        "slug": "acme",
        "phase": "Pending",
        "conditions": [],
    }

    tenant["status"] = {
        "phase": "Ready",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "internal"}
        ],
    }
    seen = client.get("/v1/signups/acme", headers=admin).json()
    assert seen["phase"] == "Ready"
    # Even an admin never sees a condition's message here.
    assert seen["conditions"] == [{"type": "Ready", "status": "True", "reason": "Available"}]
    assert client.get("/v1/signups/acme").json() == {"slug": "acme", **accepted}
    assert client.get("/v1/signups/nobody", headers=admin).status_code == 404


def test_a_signups_progress_is_for_the_admin_the_operator_recorded(
    client: TestClient, store: FakeTenantStore, tokens: dict[str, str]
) -> None:
    """The status URL's owner is the Tenant's admin by the Cognito sub the operator wrote in
    status.adminSub, never by a token's custom:tenant (a user may write that on itself)."""
    import base64

    assert signup(client).status_code == 202
    tenant = store.objects["acme"]
    tenant["status"] = {"phase": "Ready", "adminSub": "someone-else", "conditions": []}
    member = {"Authorization": f"Bearer {tokens['member']}"}
    assert client.get("/v1/signups/acme", headers=member).json()["phase"] == "Accepted"
    payload = tokens["member"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tenant["status"]["adminSub"] = claims["sub"]
    assert client.get("/v1/signups/acme", headers=member).json()["phase"] == "Ready"


def test_a_taken_slug_is_409_and_a_known_email_reveals_nothing(
    client: TestClient, store: FakeTenantStore
) -> None:
    assert signup(client).status_code == 202
    taken = signup(client, adminEmail="other@example.com")
    assert taken.status_code == 409
    assert "already taken" in taken.json()["detail"]
    # The same email under another slug: answered as accepted, nothing created.
    again = signup(client, slug="acme-two", adminEmail="a@acme.example.com")
    assert again.status_code == 202
    assert sorted(store.objects) == ["acme"]


@pytest.mark.parametrize("verification", [False, True])
def test_a_guessed_admin_email_for_a_taken_slug_is_told_nothing(
    cloud: Cloud, store: FakeTenantStore, claims: Claims, tmp_path: Path, verification: bool
) -> None:
    """Every field of a tenant but its admin email may be public (slug, name, plan): a signup
    repeating them with the right email is 409 as one with a wrong email is (before: 202, a
    "replay"), and no email is sent. Only the signup's own Idempotency-Key is a replay."""
    env = {"HERD_SIGNUP_EMAIL_VERIFICATION": "true", "HERD_SIGNUP_TOKEN_KEY": TOKEN_KEY}
    with (
        _environment(cloud, tmp_path, **(env if verification else {})),
        app_client(cloud, store, claims) as client,
    ):
        if verification:
            tokens = deps.get_signup_tokens()
            assert tokens is not None
            mail = ReadyTemplate(config.get_settings(), tokens)
            client.app.dependency_overrides[deps.verification_mail_dep] = lambda: mail  # type: ignore[attr-defined]
        jobs(cloud)
        victim = {"adminEmail": "ceo@acme.example.com", "plan": "standard"}
        first = signup(client, key="victims-key", **victim)
        assert first.status_code == 202
        if verification:
            (job,) = jobs(cloud)
            verified = client.post("/v1/signups/verify", json={"token": token_of(job)})
            assert verified.status_code == 202
        assert sorted(store.objects) == ["acme"]
        right = signup(client, **victim)
        wrong = signup(client, **{**victim, "adminEmail": "info@acme.example.com"})
        keyed = signup(client, key="guessers-key", **victim)
        taken = (409, {"detail": "the slug 'acme' is already taken"})
        for answer in (right, wrong, keyed):
            assert (answer.status_code, answer.json()) == taken
        assert jobs(cloud) == []  # nobody was mailed
        # The victim's own retry, with its key: the same answer as its first.
        again = signup(client, key="victims-key", **victim)
        assert (again.status_code, again.json()) == (202, first.json())
        assert sorted(store.objects) == ["acme"]


def test_an_idempotency_key_replays_and_refuses_another_request(
    client: TestClient, store: FakeTenantStore
) -> None:
    first = signup(client, key="k-1")
    replay = signup(client, key="k-1")
    assert first.status_code == replay.status_code == 202
    assert first.json() == replay.json()
    assert len(store.objects) == 1
    assert store.objects["acme"]["metadata"]["labels"][KEY_LABEL] == digest("k-1")
    other = signup(client, key="k-1", slug="acme-two", adminEmail="b@example.com")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert len(store.objects) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slug": "admin"}, "slug"),  # reserved
        ({"slug": "Has_Upper"}, "slug"),
        ({"slug": "-edge"}, "slug"),
        ({"adminEmail": "not-an-email"}, "adminEmail"),
        ({"plan": "free"}, "plan"),
        ({"displayName": ""}, "displayName"),
    ],
)
def test_bad_signups_are_422_and_create_nothing(
    client: TestClient, store: FakeTenantStore, changes: dict[str, str], field: str
) -> None:
    answer = signup(client, **changes)
    assert answer.status_code == 422
    assert any(field in err["loc"] for err in answer.json()["detail"])
    assert store.objects == {}


def test_odd_slugs_in_paths_and_huge_bodies_are_refused(client: TestClient) -> None:
    assert client.get("/v1/signups/a_b").status_code == 422
    assert client.get("/v1/signups/" + "a" * 41).status_code == 422
    huge = client.post(
        "/v1/signups",
        content=b'{"displayName": "' + b"x" * 20_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413


def test_signups_are_rate_limited_per_client(
    cloud: Cloud, store: FakeTenantStore, tmp_path: Path
) -> None:
    limits = {"HERD_SIGNUP_BURST": "2", "HERD_SIGNUP_RATE": "0.01"}
    with (
        _environment(cloud, tmp_path, **limits),
        app_client(cloud, store, fake_claims()) as client,
    ):
        answers = [signup(client, slug=f"rate-{i}", adminEmail=f"r{i}@x.com") for i in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert sorted(store.objects) == ["rate-0", "rate-1"]


def test_one_client_spends_its_share_of_the_signups_and_nothing_of_the_others(
    cloud: Cloud, store: FakeTenantStore, tmp_path: Path
) -> None:
    """One address at its limit (before: 1/s, ten times the global 0.1/s, so it took every
    signup there was) is refused from its own share, which it passes before the global
    budget: what it is refused never spends the others'."""
    limits = {
        "HERD_TRUSTED_PROXIES": "1",
        "HERD_SIGNUP_CLIENT_BURST": "2",
        "HERD_SIGNUP_GLOBAL_BURST": "3",
        "HERD_SIGNUP_GLOBAL_RATE": "0.001",
        "HERD_SIGNUP_CLIENT_RATE": "0.00005",
    }
    with (
        _environment(cloud, tmp_path, **limits),
        app_client(cloud, store, fake_claims()) as client,
    ):

        def from_(address: str, i: int) -> Any:
            body = {**SIGNUP, "plan": "starter", "slug": f"c-{i}", "adminEmail": f"c{i}@x.com"}
            return client.post("/v1/signups", json=body, headers={"X-Forwarded-For": address})

        greedy = [from_("203.0.113.7", i).status_code for i in range(4)]
        assert greedy == [202, 202, 429, 429]
        refused = from_("203.0.113.7", 9)
        assert refused.json() == {"detail": "too many signups from this client; try again later"}
        assert int(refused.headers["Retry-After"]) >= 1
        assert from_("198.51.100.1", 10).status_code == 202  # the global budget's last one
        spent = from_("198.51.100.2", 11)
        assert spent.status_code == 429 and "all clients together" in spent.json()["detail"]
    assert sorted(store.objects) == ["c-0", "c-1", "c-10"]


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"HERD_SIGNUP_CLIENT_RATE": "0.02"}, "at most a tenth of HERD_SIGNUP_GLOBAL_RATE"),
        ({"HERD_SIGNUP_CLIENT_BURST": "201"}, "must not exceed HERD_SIGNUP_GLOBAL_BURST"),
    ],
)
def test_a_clients_share_larger_than_a_tenth_of_all_is_refused_at_start(
    cloud: Cloud, tmp_path: Path, limits: dict[str, str], error: str
) -> None:
    with _environment(cloud, tmp_path, **limits), pytest.raises(ValueError, match=error):
        config.Settings()


def test_one_address_gets_its_share_of_verification_emails_whoever_asks(
    verifying: TestClient, store: FakeTenantStore, cloud: Cloud, tmp_path: Path
) -> None:
    """A mail bomb through the form: signups, each under another slug and name, all for one
    address (from any number of clients: the share is the address's). Past the address's
    share each is answered as any signup is (the asker learns nothing), and no more email is
    sent to it; another address gets its."""
    asked = [
        signup(verifying, slug=f"bomb-{i}", adminEmail="victim@example.org", displayName=f"#{i}")
        for i in range(5)
    ]
    assert {(a.status_code, a.json()["verifyEmail"]) for a in asked} == {(202, True)}
    other = signup(verifying, slug="other", adminEmail="b@other.example.com")
    assert other.status_code == 202
    sent = jobs(cloud)
    assert sorted(j["to"] for j in sent) == ["b@other.example.com"] + ["victim@example.org"] * 3
    assert store.objects == {}


# -- admin ------------------------------------------------------------------------------------
def test_admin_routes_need_an_admins_token(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/v1/tenants").status_code == 401
    assert client.get("/v1/tenants", headers={"Authorization": "Bearer junk"}).status_code == 401
    member = client.get("/v1/tenants", headers={"Authorization": f"Bearer {tokens['member']}"})
    assert member.status_code == 403
    assert "admins" in member.json()["detail"]
    assert client.delete("/v1/tenants/acme").status_code == 401


def test_a_token_of_another_app_client_is_refused(client: TestClient, cloud: Cloud) -> None:
    idp = aws_clients.client("cognito-idp", cloud.settings)
    other = idp.create_user_pool_client(
        UserPoolId=cloud.side.user_pool_id,
        ClientName="other",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    auth = idp.initiate_auth(
        ClientId=other,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": ADMIN[0], "PASSWORD": ADMIN[1]},
    )["AuthenticationResult"]
    answer = client.get("/v1/tenants", headers={"Authorization": f"Bearer {auth['IdToken']}"})
    assert answer.status_code == 401
    assert "another app client" in answer.json()["detail"]


def test_admins_list_in_pages_and_delete(
    client: TestClient, store: FakeTenantStore, tokens: dict[str, str]
) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for i in range(3):
        assert signup(client, slug=f"page-{i}", adminEmail=f"p{i}@x.com").status_code == 202
    first = client.get("/v1/tenants", params={"limit": 2}, headers=admin).json()
    assert [t["slug"] for t in first["items"]] == ["page-0", "page-1"]
    rest = client.get(
        "/v1/tenants", params={"limit": 2, "continue": first["continue"]}, headers=admin
    ).json()
    assert [t["slug"] for t in rest["items"]] == ["page-2"]
    assert rest.get("continue") is None
    bad = client.get("/v1/tenants", params={"continue": "garbage"}, headers=admin)
    assert bad.status_code == 400
    assert client.get("/v1/tenants", params={"limit": 0}, headers=admin).status_code == 422

    assert client.delete("/v1/tenants/page-1", headers=admin).json() == {
        "slug": "page-1",
        "status": "deleting",
    }
    assert sorted(store.objects) == ["page-0", "page-2"]
    assert client.delete("/v1/tenants/page-1", headers=admin).status_code == 404


def test_sign_in_with_a_wrong_password_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    wrong = client.post("/v1/auth/token", json={"username": ADMIN[0], "password": "nope-Nope1!"})
    assert wrong.status_code == 401
    unknown = client.post("/v1/auth/token", json={"username": "x@y.com", "password": "Nope-1!x"})
    assert unknown.status_code == 401
    assert wrong.json() == unknown.json()  # says nothing about which users exist


def test_an_email_whose_tenant_is_gone_may_sign_up_again(
    client: TestClient, store: FakeTenantStore, claims: Claims
) -> None:
    assert signup(client).status_code == 202
    name = claim_name(EMAIL, "a@acme.example.com")
    fake: Any = claims.kube
    # The claim is handed to its Tenant off the request's path.
    wait_for(lambda: fake.items[name]["metadata"].get("ownerReferences"), 10, "claim owned")
    assert signup(client, slug="acme-again").status_code == 202
    assert sorted(store.objects) == ["acme"]  # the email is taken while its Tenant exists
    del store.objects["acme"]  # deleted (the garbage collector would take the claim too)
    assert signup(client, slug="acme-again").status_code == 202
    assert sorted(store.objects) == ["acme-again"]
    assert fake.items[name]["data"]["slug"] == "acme-again"


# -- N9: email verification -------------------------------------------------------------------
TOKEN_KEY = "fast-test-signup-token-key-0123456789"


class ReadyTemplate(VerificationMail):
    """The verification mail with its SESTemplate taken as Ready (no API server here)."""

    def ses_template(self) -> str:
        return "test-signup-verification"


@pytest.fixture
def verifying(
    cloud: Cloud, store: FakeTenantStore, claims: Claims, tmp_path: Path
) -> Iterator[TestClient]:
    env = {"HERD_SIGNUP_EMAIL_VERIFICATION": "true", "HERD_SIGNUP_TOKEN_KEY": TOKEN_KEY}
    with _environment(cloud, tmp_path, **env), app_client(cloud, store, claims) as test_client:
        tokens = deps.get_signup_tokens()
        assert tokens is not None
        mail = ReadyTemplate(config.get_settings(), tokens)
        test_client.app.dependency_overrides[deps.verification_mail_dep] = lambda: mail  # type: ignore[attr-defined]
        jobs(cloud)  # none left by another test
        yield test_client


def jobs(cloud: Cloud) -> list[dict[str, Any]]:
    """The email jobs on the queue, taken off it."""
    sqs = aws_clients.client("sqs", cloud.settings)
    out: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=cloud.side.email_queue_url, MaxNumberOfMessages=10
    ).get("Messages"):
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(
                QueueUrl=cloud.side.email_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return out


def token_of(job: dict[str, Any]) -> str:
    url = str(job["data"]["verifyURL"])
    assert url.startswith("https://signup.example.com/#verify/"), url
    return url.rsplit("/", 1)[-1]


def test_a_signup_makes_nothing_but_one_email_until_its_link_is_followed(
    verifying: TestClient, store: FakeTenantStore, claims: Claims, cloud: Cloud
) -> None:
    answer = signup(verifying, key="k-9")
    assert answer.status_code == 202
    assert answer.json() == {
        "slug": "acme",
        "status": "https://signup.example.com/v1/signups/acme",
        "verifyEmail": True,
    }
    assert store.objects == {}
    assert claims.kube.items == {}  # type: ignore[attr-defined]
    (job,) = jobs(cloud)
    assert job["to"] == "a@acme.example.com" and job["template"] == "test-signup-verification"
    assert job["report"] is None  # no Tenant to report to
    assert {k: job["data"][k] for k in ("displayName", "slug", "plan")} == {
        "displayName": "Acme Farms",
        "slug": "acme",
        "plan": "starter",
    }
    # Asked again (a retry, a double click): the same token, so the same job key: one email.
    assert signup(verifying, key="k-9").json() == answer.json()
    (again,) = jobs(cloud)
    assert again["idempotencyKey"] == job["idempotencyKey"] and token_of(again) == token_of(job)

    verified = verifying.post("/v1/signups/verify", json={"token": token_of(job)})
    assert verified.status_code == 202, verified.text
    assert verified.json() == {"slug": "acme", "status": answer.json()["status"]}
    tenant = store.objects["acme"]
    assert tenant["spec"]["adminEmail"] == "a@acme.example.com"
    assert tenant["metadata"]["labels"][KEY_LABEL] == digest("k-9")
    # A second click finds the Tenant the first made: the same answer, nothing more.
    second = verifying.post("/v1/signups/verify", json={"token": token_of(job)})
    assert (second.status_code, second.json()) == (202, verified.json())
    assert sorted(store.objects) == ["acme"]
    # Made now: the very signup again sends nothing; its key for another is 422 as ever.
    assert signup(verifying, key="k-9").json() == answer.json()
    assert jobs(cloud) == []
    assert signup(verifying, key="k-9", slug="acme-two").status_code == 422


def test_a_known_email_gets_the_same_answer_and_its_link_says_it_has_a_tenant(
    verifying: TestClient, store: FakeTenantStore, cloud: Cloud
) -> None:
    signup(verifying)
    assert verifying.post("/v1/signups/verify", json={"token": token_of(*jobs(cloud))}).is_success
    known = signup(verifying, slug="acme-two")
    new = signup(verifying, slug="other", adminEmail="b@other.example.com")
    assert known.status_code == new.status_code == 202
    assert known.json().keys() == new.json().keys()
    assert {j["to"] for j in jobs(cloud)} == {"a@acme.example.com", "b@other.example.com"}
    # A taken slug is 409 for anyone, known address or not.
    for email in ("a@acme.example.com", "c@x.example.com"):
        taken = signup(verifying, adminEmail=email, displayName="Copycat")
        assert (taken.status_code, taken.json()) == (
            409,
            {"detail": "the slug 'acme' is already taken"},
        )
    tokens = SignupTokens(TOKEN_KEY, 86_400)
    twice = tokens.issue({**SIGNUP, "slug": "acme-two", "plan": "starter"}, None)
    twice.spec["adminEmail"] = "a@acme.example.com"
    refused = verifying.post("/v1/signups/verify", json={"token": tokens.token(twice)})
    assert refused.status_code == 409
    assert "signed up already" in refused.json()["detail"]
    assert sorted(store.objects) == ["acme"]


def test_a_send_that_failed_spends_nothing_of_its_addresss_share(
    verifying: TestClient, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three 503s while the queue is away, then the signup again: its email goes out (the
    address's share, 3, was not spent by emails that were never sent)."""
    down = {"left": 3}
    real = ReadyTemplate.send

    def flaky(self: ReadyTemplate, pending: Pending) -> str:
        if down["left"]:
            down["left"] -= 1
            raise Unavailable("the queue refused")
        return real(self, pending)

    monkeypatch.setattr(ReadyTemplate, "send", flaky)
    assert [signup(verifying).status_code for _ in range(3)] == [503] * 3
    assert signup(verifying).status_code == 202
    assert [j["to"] for j in jobs(cloud)] == ["a@acme.example.com"]


def test_a_link_makes_its_tenant_once_even_after_the_tenant_is_deleted(
    verifying: TestClient, store: FakeTenantStore, claims: Claims, cloud: Cloud
) -> None:
    signup(verifying)
    link = {"token": token_of(*jobs(cloud))}
    first = verifying.post("/v1/signups/verify", json=link)
    assert first.status_code == 202
    assert verifying.post("/v1/signups/verify", json=link).json() == first.json()  # 2nd click
    del store.objects["acme"]  # an admin deletes it
    again = verifying.post("/v1/signups/verify", json=link)
    assert (again.status_code, again.json()) == (
        410,
        {"detail": "this verification link has been used already: sign up again"},
    )
    assert store.objects == {}


def test_used_links_are_forgotten_by_name_once_they_expire(claims: Claims) -> None:
    """One ConfigMap per expiry: those a step past are deleted by the next use of any link,
    named (never listed): from a link's lifetime ago the first time, then since the last."""
    fake: Any = claims.kube
    step, ttl, now = 600, 3600, 1_000_000_200

    def left() -> list[int]:
        return sorted(int(name.rsplit("-", 1)[1]) - now for name in fake.items)

    async def scenario() -> None:
        links = claims.links
        for expires in (now - 4200, now - 1200, now - 600, now + 600, now + 3600):
            await links.use(f"token-{expires}", expires, "acme")
        assert await links.made(f"token-{now - 600}", now - 600) == "acme"
        assert await links.made("another", now - 600) is None
        links.sweep_later(now, step, ttl)
        await asyncio.gather(*claims._background)
        # A step past: gone. Just past: kept (a clock ahead deletes nothing early). Older
        # than a link's lifetime: outside what a sweep looks at.
        assert left() == [-4200, -600, 600, 3600]
        links.sweep_later(now + 1800, step, ttl)
        await asyncio.gather(*claims._background)
        assert left() == [-4200, 3600]

    asyncio.run(scenario())


def test_a_forged_changed_or_expired_link_is_refused(
    verifying: TestClient, store: FakeTenantStore, cloud: Cloud
) -> None:
    signup(verifying)
    token = token_of(*jobs(cloud))
    version, payload, mac = token.split(".")
    other = Pending(
        {
            "displayName": "Evil",
            "slug": "evil",
            "adminEmail": "e@evil.example.com",
            "plan": "starter",
        },
        None,
        4_102_444_800,
    )
    forged = SignupTokens("another-key-of-at-least-32-characters", 86_400).token(other)
    changed = f"{version}.{SignupTokens(TOKEN_KEY, 600).token(other).split('.')[1]}.{mac}"
    for bad in (forged, changed, f"{version}.{payload}", "junk", token[:-2]):
        refused = verifying.post("/v1/signups/verify", json={"token": bad})
        assert (refused.status_code, refused.json()) == (
            400,
            {"detail": "this verification link is not valid"},
        ), bad
    past = Pending({**other.spec, "slug": "late"}, None, 1_000_000_000)
    expired = verifying.post(
        "/v1/signups/verify", json={"token": SignupTokens(TOKEN_KEY, 600).token(past)}
    )
    assert (expired.status_code, expired.json()) == (
        410,
        {"detail": "this verification link has expired: sign up again"},
    )
    assert store.objects == {}
