"""Tenant end to end: embedded control plane + moto + the operator and worker processes +
the OpenRemote stub. A Tenant turns Ready, its admin gets exactly one welcome email, and
deleting it leaves nothing behind — also when the operator is SIGKILLed mid-way."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core import aws
from herd_core.constants import GROUP, VERSION, WAKE_ANNOTATION
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings

from .faultproxy import FaultProxy
from .helpers import Custom, OperatorProcess, WorkerProcess, events, queue_empty, wait_for
from .openremote_stub import OpenRemoteStub

KIND, PLURAL = "Tenant", "tenants"
# A Tenant with callback URLs gets an app client of its own (a child CognitoClient); one
# without signs in with the environment's shared client, herd-tenants (docs/tenant-model.md).
CALLBACKS = {"callbackURLs": ["https://app.acme.example.com/callback"]}
pytestmark = pytest.mark.usefixtures("live_operator", "worker")


@pytest.fixture
def tenants(api: ApiClient, tenants_ns: str) -> Custom:
    return Custom(api, tenants_ns)


def new_tenant(tenants: Custom, **extra: Any) -> tuple[str, str]:
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    email = f"admin@{slug}.example.com"
    tenants.create(
        KIND,
        PLURAL,
        slug,
        {
            "displayName": "Acme Farms",
            "slug": slug,
            "adminEmail": email,
            "plan": "standard",
            **extra,
        },
    )
    return slug, email


def emails_to(moto: MotoServer, address: str) -> list[dict[str, Any]]:
    return [
        m
        for m in moto.data()["ses"]["TemplateMessage"]
        if address in m["destinations"]["ToAddresses"]
    ]


def cognito_user(settings: Settings, pool: str, email: str) -> dict[str, Any] | None:
    idp = aws.client("cognito-idp", settings)
    try:
        return idp.admin_get_user(UserPoolId=pool, Username=email)  # type: ignore[no-any-return]
    except idp.exceptions.UserNotFoundException:
        return None


def all_app_clients(settings: Settings, pool: str) -> list[str]:
    pages = (
        aws.client("cognito-idp", settings)
        .get_paginator("list_user_pool_clients")
        .paginate(UserPoolId=pool, PaginationConfig={"PageSize": 60})
    )
    return [c["ClientId"] for page in pages for c in page["UserPoolClients"]]


def secret_data(api: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    try:
        found = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}


def app_clients(settings: Settings, pool: str, slug: str) -> list[str]:
    found = aws.client("cognito-idp", settings).list_user_pool_clients(
        UserPoolId=pool, MaxResults=60
    )["UserPoolClients"]
    return [c["ClientId"] for c in found if c["ClientName"] == f"tenant-{slug}"]


def assert_provisioned_once(
    tenants: Custom,
    slug: str,
    email: str,
    moto: MotoServer,
    settings: Settings,
    pool: str,
    openremote: OpenRemoteStub,
    own: bool = False,
) -> None:
    """`own`: the Tenant has callback URLs, so an app client (and CognitoClient) of its own."""
    tenants.wait_condition(PLURAL, slug, timeout=90)
    tenants.wait_condition(PLURAL, slug, "WelcomeEmailSent", timeout=60)
    status = tenants.get(PLURAL, slug)["status"]
    assert status["phase"] == "Ready"
    assert status["loginURL"] == f"https://platform-test.herd-itt.com/manager/?realm={slug}"
    assert status["clientSecretName"] == f"{slug}-cognito"
    assert set(status["welcomeEmail"]) == {"queuedAt", "sentAt", "messageId"}
    for step in ("CognitoUser", "AppClient", "Realm", "WelcomeEmailQueued"):
        assert tenants.condition(PLURAL, slug, step).get("status") == "True", (step, status)

    # Exactly one welcome email, to the admin, with the template's subject filled in.
    sent = emails_to(moto, email)
    assert len(sent) == 1, sent
    assert sent[0]["template"] == "welcome"
    rendered = aws.client("ses", settings).test_render_template(
        TemplateName="welcome", TemplateData=sent[0]["template_data"]
    )["RenderedTemplate"]
    assert "Subject: Welcome to Herd, Acme Farms" in rendered
    assert json.loads(sent[0]["template_data"])["slug"] == slug

    user = cognito_user(settings, pool, email)
    assert user is not None
    attrs = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attrs["custom:tenant"] == slug
    # Whom the API takes for the tenant's admin: that user, recorded where only we write.
    assert status["adminSub"] == attrs["sub"]
    step = tenants.condition(PLURAL, slug, "AppClient")
    if own:
        assert len(app_clients(settings, pool, slug)) == 1
        child = tenants.get("cognitoclients", f"{slug}-app")["status"]
        assert status["clientId"] == child["clientId"]
        assert step["message"].startswith(f"CognitoClient {slug}-app"), step
    else:
        # The shared client: no app client, no CognitoClient of its own.
        assert app_clients(settings, pool, slug) == []
        assert not tenants.exists("cognitoclients", f"{slug}-app")
        assert step["reason"] == "Shared" and "shared client herd-tenants" in step["message"]
    realm = openremote.realms[slug]
    assert [(u["username"], u["email"], u["roles"]) for u in realm.users.values()] == [
        ("admin", email, ["read", "write"])
    ]


def assert_cleaned_up(
    tenants: Custom,
    slug: str,
    email: str,
    settings: Settings,
    pool: str,
    openremote: OpenRemoteStub,
) -> None:
    tenants.delete(PLURAL, slug)
    tenants.wait_gone(PLURAL, slug, timeout=60)
    assert cognito_user(settings, pool, email) is None
    assert slug not in openremote.realms
    # The child CognitoClient goes by garbage collection, then its finalizer removes the
    # app client from Cognito.
    tenants.wait_gone("cognitoclients", f"{slug}-app", timeout=90)
    wait_for(lambda: app_clients(settings, pool, slug) == [], 30, "app client deleted")


@pytest.mark.parametrize("own", [False, True], ids=["shared-client", "own-client"])
def test_signup_to_ready_to_deleted(
    own: bool,
    tenants: Custom,
    moto: MotoServer,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
    user_pool: str,
    openremote: OpenRemoteStub,
    api: ApiClient,
) -> None:
    slug, email = new_tenant(tenants, **(CALLBACKS if own else {}))
    assert_provisioned_once(tenants, slug, email, moto, aws_settings, user_pool, openremote, own)
    # The Secret its admins' apps read names the client they sign in with.
    secret = secret_data(api, tenants.namespace, f"{slug}-cognito")
    assert secret is not None and secret["userPoolId"] == user_pool
    assert secret["clientId"] == tenants.get(PLURAL, slug)["status"]["clientId"]
    assert (secret["clientId"] == aws_env.shared_client_id) is not own
    expected = {"CognitoUserCreated", "RealmProvisioned", "WelcomeEmailQueued"}
    expected |= {"AppClientCreated"} if own else set()
    # Kopf posts Events from a queue of its own, after the status write at times.
    wait_for(
        lambda: expected <= {r for _, r, _ in events(api, tenants.namespace, slug)},
        30,
        "the provisioning events",
    )
    if not own:
        assert "AppClientCreated" not in {r for _, r, _ in events(api, tenants.namespace, slug)}
    assert_cleaned_up(tenants, slug, email, aws_settings, user_pool, openremote)


# Points at which the test SIGKILLs the operator, each right after a side effect took place
# and before the operator could record it.
KILL_POINTS: dict[str, Callable[[FaultProxy, OpenRemoteStub, str, Callable[[], None]], None]] = {
    "after Cognito AdminCreateUser": lambda p, o, slug, kill: p.after(
        "AdminCreateUser", kill, contains=slug
    ),
    "after Cognito CreateUserPoolClient": lambda p, o, slug, kill: p.after(
        "CreateUserPoolClient", kill, contains=slug
    ),
    "after OpenRemote realm create": lambda p, o, slug, kill: o.after("realm", kill),
    "after OpenRemote admin user create": lambda p, o, slug, kill: o.after("user", kill),
    "after OpenRemote role assignment": lambda p, o, slug, kill: o.after("roles", kill),
    "after the welcome email job is queued": lambda p, o, slug, kill: p.after(
        "SendMessage", kill, contains=slug
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_operator_killed_mid_reconcile(
    point: str,
    tenants: Custom,
    moto: MotoServer,
    aws_settings: Settings,
    user_pool: str,
    openremote: OpenRemoteStub,
    proxy: FaultProxy,
    live_operator: OperatorProcess,
) -> None:
    slug = f"kill-{uuid.uuid4().hex[:8]}"
    email = f"admin@{slug}.example.com"
    KILL_POINTS[point](proxy, openremote, slug, live_operator.kill)
    own = "CreateUserPoolClient" in point  # only a Tenant with callback URLs makes one
    try:
        tenants.create(
            KIND,
            PLURAL,
            slug,
            {
                "displayName": "Acme Farms",
                "slug": slug,
                "adminEmail": email,
                "plan": "starter",
                **(CALLBACKS if own else {}),
            },
        )
        wait_for(lambda: not live_operator.running(), 60, f"operator killed {point}")
    finally:
        proxy.clear()
        openremote.hooks.clear()
    live_operator.start()
    assert_provisioned_once(tenants, slug, email, moto, aws_settings, user_pool, openremote, own)
    assert_cleaned_up(tenants, slug, email, aws_settings, user_pool, openremote)


def test_email_used_by_another_tenant_fails_clearly(tenants: Custom) -> None:
    slug, email = new_tenant(tenants)
    tenants.wait_condition(PLURAL, slug, timeout=90)
    other = f"other-{uuid.uuid4().hex[:8]}"
    tenants.create(
        KIND,
        PLURAL,
        other,
        {"displayName": "Other", "slug": other, "adminEmail": email, "plan": "starter"},
    )
    cond = tenants.wait_condition(PLURAL, other, "Ready", "False", reason="AlreadyExists")
    assert slug in cond["message"]
    wait_for(
        lambda: tenants.get(PLURAL, other)["status"].get("phase") == "Failed", 30, "phase Failed"
    )


def test_retain_keeps_identity(
    tenants: Custom, aws_settings: Settings, user_pool: str, openremote: OpenRemoteStub
) -> None:
    slug, email = new_tenant(tenants, deletionPolicy="Retain", **CALLBACKS)
    tenants.wait_condition(PLURAL, slug, timeout=90)
    tenants.delete(PLURAL, slug)
    tenants.wait_gone(PLURAL, slug)
    tenants.wait_gone("cognitoclients", f"{slug}-app", timeout=90)
    assert cognito_user(aws_settings, user_pool, email) is not None
    assert slug in openremote.realms
    assert len(app_clients(aws_settings, user_pool, slug)) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slug": "renamed"}, "spec.slug is immutable"),
        ({"adminEmail": "new@example.com"}, "spec.adminEmail is immutable"),
        ({"plan": "platinum"}, "spec.plan"),
    ],
)
def test_immutable_and_invalid_updates_are_rejected(
    tenants: Custom, change: dict[str, Any], message: str
) -> None:
    slug, _ = new_tenant(tenants)
    with pytest.raises(ApiException) as err:
        tenants.patch(PLURAL, slug, change)
    assert err.value.status == 422
    assert message in err.value.body


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"slug": "Not_DNS"}, "spec.slug"),
        ({"adminEmail": "not-an-email"}, "spec.adminEmail"),
        ({"callbackURLs": ["http://example.com"]}, "must be https"),
    ],
)
def test_bad_tenants_are_rejected(tenants: Custom, spec: dict[str, Any], message: str) -> None:
    slug = spec.get("slug", f"bad-{uuid.uuid4().hex[:6]}")
    body = {"displayName": "Bad", "slug": slug, "adminEmail": "a@b.co", "plan": "starter", **spec}
    with pytest.raises(ApiException) as err:
        tenants.create(KIND, PLURAL, slug.lower().replace("_", "-"), body)
    assert err.value.status == 422
    assert message in err.value.body


def test_worker_sends_a_redelivered_job_once(
    worker: WorkerProcess, moto: MotoServer, aws_settings: Settings, aws_env: Any
) -> None:
    from herd_core.emailjobs import EmailJob, enqueue

    to = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    job = EmailJob(
        idempotency_key=f"test-{to}",
        template="welcome",
        to=to,
        data={"displayName": "Dup", "slug": "dup", "loginURL": "https://x"},
    )
    sqs = aws.client("sqs", aws_settings)
    enqueue(sqs, aws_env.email_queue_url, job)
    enqueue(sqs, aws_env.email_queue_url, job)  # the same job delivered twice
    wait_for(lambda: len(emails_to(moto, to)) == 1, 30, "one email")

    wait_for(lambda: queue_empty(sqs, aws_env.email_queue_url), 30, "both deliveries consumed")
    assert len(emails_to(moto, to)) == 1


def test_poison_message_lands_in_the_dlq(
    worker: WorkerProcess, aws_settings: Settings, aws_env: Any
) -> None:
    sqs = aws.client("sqs", aws_settings)
    marker = f"poison-{uuid.uuid4().hex}"
    sqs.send_message(QueueUrl=aws_env.email_queue_url, MessageBody=f"not json {marker}")

    def in_dlq() -> bool:
        got = sqs.receive_message(
            QueueUrl=aws_env.email_dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return any(marker in m["Body"] for m in got)

    wait_for(in_dlq, 90, "poison message in the DLQ")


def test_failed_sends_are_retried_then_dead_lettered(
    worker: WorkerProcess, aws_settings: Settings, aws_env: Any
) -> None:
    from herd_core.emailjobs import EmailJob, enqueue

    to = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    enqueue(
        aws.client("sqs", aws_settings),
        aws_env.email_queue_url,
        EmailJob(idempotency_key=f"missing-{to}", template="no-such-template", to=to, data={}),
    )
    sqs = aws.client("sqs", aws_settings)

    def in_dlq() -> bool:
        got = sqs.receive_message(
            QueueUrl=aws_env.email_dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return any(to in m["Body"] for m in got)

    wait_for(in_dlq, 120, "failing job in the DLQ after its retries")
    # Each failure gave its claim back, so nothing blocks a later retry of the same key.
    ddb = aws.client("dynamodb", aws_settings)
    item = ddb.get_item(
        TableName=aws_env.email_jobs_table, Key={"key": {"S": f"missing-{to}"}}
    ).get("Item")
    assert item is None
    assert "send of job missing-" in worker.log_text()


def test_one_writer_per_field_and_the_new_child_hands_its_state_to_the_waiting_tenant(
    tenants: Custom,
) -> None:
    """A new Tenant's handler waits in place for its new CognitoClient's first state (no poll,
    no wake annotation, no second handler run). The worker's fields stay the worker's
    whatever the operator writes later."""
    slug, _ = new_tenant(tenants, **CALLBACKS)
    tenants.wait_condition(PLURAL, slug, timeout=90)
    child = tenants.condition("cognitoclients", f"{slug}-app", "Ready")
    ready = tenants.condition(PLURAL, slug, "AppClient")
    # The Tenant took the AppClient step within moments of its child turning Ready...
    assert child["status"] == ready["status"] == "True"
    seconds = (
        dt.datetime.fromisoformat(ready["lastTransitionTime"])
        - dt.datetime.fromisoformat(child["lastTransitionTime"])
    ).total_seconds()
    assert 0 <= seconds <= 5, (child, ready)
    # ...in the run that created the child: nothing woke it.
    annotations = tenants.get(PLURAL, slug)["metadata"].get("annotations") or {}
    assert WAKE_ANNOTATION not in annotations, annotations

    sent = tenants.wait_condition(PLURAL, slug, "WelcomeEmailSent", timeout=60)
    # The operator writes its own conditions again (a spec change)...
    tenants.patch(PLURAL, slug, {"displayName": "Acme Farms II"})
    wait_for(
        lambda: tenants.get(PLURAL, slug)["status"].get("observedGeneration") == 2,
        60,
        "operator reconciled the change",
    )
    # ...and never touches the worker's.
    assert tenants.condition(PLURAL, slug, "WelcomeEmailSent") == sent
    owners = {
        m["manager"]: json.dumps(m.get("fieldsV1"))
        for m in tenants.get(PLURAL, slug)["metadata"]["managedFields"]
        if m.get("subresource") == "status"
    }
    welcome = 'k:{\\"type\\":\\"WelcomeEmailSent\\"}'
    assert welcome in owners["herd-worker"] and '"f:messageId"' in owners["herd-worker"]
    assert all(welcome not in fields for m, fields in owners.items() if m != "herd-worker")
    assert '"f:messageId"' not in owners.get("herd-operator", "")


def test_deletion_never_orphans_the_cognito_user(
    tenants: Custom,
    proxy: FaultProxy,
    aws_settings: Settings,
    user_pool: str,
) -> None:
    """Cognito refuses the user's deletion with an error no retry seems to mend: the Tenant
    keeps its finalizer and says what blocks, rather than leaving the user behind."""
    slug, email = new_tenant(tenants)
    tenants.wait_condition(PLURAL, slug, timeout=90)
    refused = proxy.fail("AdminDeleteUser", times=2, fault="invalid", contains=slug)
    try:
        tenants.delete(PLURAL, slug)
        cond = tenants.wait_condition(PLURAL, slug, "Ready", "False", reason="DeletionBlocked")
        assert "InvalidParameter" in cond["message"]
        assert cognito_user(aws_settings, user_pool, email) is not None
        tenants.wait_gone(PLURAL, slug, timeout=60)
    finally:
        proxy.clear()
    assert refused.hits == 2
    assert cognito_user(aws_settings, user_pool, email) is None


@pytest.mark.parametrize("own", [True, False], ids=["own-client", "shared-client"])
def test_a_foreign_secret_blocks_the_tenant_visibly_until_it_is_gone(
    own: bool, tenants: Custom, api: ApiClient
) -> None:
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        tenants.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"{slug}-cognito"), string_data={"mine": "yes"}
        ),
    )
    tenants.create(
        KIND,
        PLURAL,
        slug,
        {
            "displayName": "Acme Farms",
            "slug": slug,
            "adminEmail": f"admin@{slug}.example.com",
            "plan": "standard",
            **(CALLBACKS if own else {}),
        },
    )
    # The child (or, on the shared client, the Tenant itself) refuses the Secret; the Tenant
    # says why it waits.
    step = tenants.wait_condition(PLURAL, slug, "AppClient", "False", reason="SecretConflict")
    assert step["message"].startswith(f"CognitoClient {slug}-app" if own else "shared client")
    assert tenants.get(PLURAL, slug)["status"]["phase"] == "Provisioning"
    secret = core.read_namespaced_secret(f"{slug}-cognito", tenants.namespace)
    assert secret.data == {"mine": "eWVz"} and not secret.metadata.owner_references
    core.delete_namespaced_secret(f"{slug}-cognito", tenants.namespace)
    tenants.wait_condition(PLURAL, slug, timeout=60)
    if not own:
        return  # the Tenant's own retry wrote the Secret
    # A failed child is retried on its own backoff, with no handler waiting for it: its
    # change woke the Tenant through the annotation.
    assert WAKE_ANNOTATION in (tenants.get(PLURAL, slug)["metadata"].get("annotations") or {})


def test_a_tenants_client_never_resumes_one_made_before_its_claim(
    tenants: Custom,
    proxy: FaultProxy,
    aws_settings: Settings,
    user_pool: str,
) -> None:
    """A Tenant's own app client is created without listing the pool, so its claim cannot
    say the name was free. A create whose answer never came (503) leaves the claim; a client
    of that name made before the claim (by hand, or kept by a deleted Tenant of the same
    slug) is not the one it made, and is left alone."""
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    before = aws.client("cognito-idp", aws_settings).create_user_pool_client(
        UserPoolId=user_pool, ClientName=f"tenant-{slug}"
    )["UserPoolClient"]["ClientId"]
    failed = proxy.fail("CreateUserPoolClient", times=2, fault="unavailable", contains=slug)
    try:
        tenants.create(
            KIND,
            PLURAL,
            slug,
            {
                "displayName": "Acme Farms",
                "slug": slug,
                "adminEmail": f"admin@{slug}.example.com",
                "plan": "standard",
                **CALLBACKS,
            },
        )
        tenants.wait_condition(PLURAL, slug, timeout=90)
    finally:
        proxy.clear()
    child = tenants.get("cognitoclients", f"{slug}-app")["status"]
    assert child["clientId"] != before
    assert failed.hits == 2
    assert sorted(app_clients(aws_settings, user_pool, slug)) == sorted([before, child["clientId"]])
    assert not {"creationStarted", "claimedName", "claimedNameFree"} & set(child)


def test_a_cognitoclient_of_the_childs_name_that_is_not_the_tenants_is_never_touched(
    tenants: Custom, api: ApiClient, aws_settings: Settings, user_pool: str
) -> None:
    """N11: a signup for slug S meets a CognitoClient `S-app` that someone else made in the
    tenants namespace. The Tenant does not control it, so it never patches it (that would
    move its Secret and take its app client over): the Tenant fails, saying so."""
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    team = f"team-{uuid.uuid4().hex[:8]}"
    tenants.create(
        "CognitoClient",
        "cognitoclients",
        f"{slug}-app",
        {
            "clientName": team,
            "secretName": f"{team}-credentials",
            "explicitAuthFlows": ["ALLOW_USER_SRP_AUTH"],
        },
    )
    tenants.wait_condition("cognitoclients", f"{slug}-app")
    theirs = tenants.get("cognitoclients", f"{slug}-app")
    core = client.CoreV1Api(api)
    secret = core.read_namespaced_secret(f"{team}-credentials", tenants.namespace).data

    tenants.create(
        KIND,
        PLURAL,
        slug,
        {
            "displayName": "Acme Farms",
            "slug": slug,
            "adminEmail": f"admin@{slug}.example.com",
            "plan": "standard",
            **CALLBACKS,
        },
    )
    ready = tenants.wait_condition(PLURAL, slug, "Ready", "False", reason="AlreadyExists")
    assert f"CognitoClient {slug}-app" in ready["message"]
    step = tenants.condition(PLURAL, slug, "AppClient")
    assert (step["status"], step["reason"]) == ("False", "AlreadyExists")
    wait_for(
        lambda: tenants.get(PLURAL, slug)["status"].get("phase") == "Failed", 30, "phase Failed"
    )
    now = tenants.get("cognitoclients", f"{slug}-app")
    assert now["spec"] == theirs["spec"]
    assert now["metadata"].get("ownerReferences") == theirs["metadata"].get("ownerReferences")
    assert now["status"]["clientId"] == theirs["status"]["clientId"]
    assert core.read_namespaced_secret(f"{team}-credentials", tenants.namespace).data == secret
    with pytest.raises(ApiException) as err:
        core.read_namespaced_secret(f"{slug}-cognito", tenants.namespace)
    assert err.value.status == 404
    assert app_clients(aws_settings, user_pool, slug) == []

    # Deleting the Tenant leaves it as it was, too.
    tenants.delete(PLURAL, slug)
    tenants.wait_gone(PLURAL, slug, timeout=60)
    assert tenants.get("cognitoclients", f"{slug}-app")["spec"] == theirs["spec"]
    tenants.wait_condition("cognitoclients", f"{slug}-app")
    tenants.delete("cognitoclients", f"{slug}-app")


def test_a_slug_signed_up_again_waits_for_the_earlier_tenants_client_to_go(
    tenants: Custom, proxy: FaultProxy
) -> None:
    """The earlier Tenant's CognitoClient outlives it (garbage collection, then its own
    finalizer; held here by a Cognito that answers its delete with 503s): the new Tenant of
    that slug waits for it, neither patches it nor fails."""
    slug, email = new_tenant(tenants, **CALLBACKS)
    tenants.wait_condition(PLURAL, slug, timeout=90)
    old = tenants.get("cognitoclients", f"{slug}-app")["status"]["clientId"]
    proxy.fail("DeleteUserPoolClient", times=1000, fault="unavailable", contains=old)
    try:
        tenants.delete(PLURAL, slug)
        tenants.wait_gone(PLURAL, slug, timeout=60)
        wait_for(
            lambda: tenants.get("cognitoclients", f"{slug}-app")["metadata"].get(
                "deletionTimestamp"
            ),
            60,
            "the earlier child being deleted",
        )
        again = tenants.create(
            KIND,
            PLURAL,
            slug,
            {
                "displayName": "Acme Farms",
                "slug": slug,
                "adminEmail": email,
                "plan": "standard",
                **CALLBACKS,
            },
        )
        step = tenants.wait_condition(PLURAL, slug, "AppClient", "False", reason="Waiting")
        assert "is being deleted" in step["message"]
        assert tenants.get("cognitoclients", f"{slug}-app")["status"]["clientId"] == old
    finally:
        proxy.clear()
    tenants.wait_condition(PLURAL, slug, timeout=90)
    child = tenants.get("cognitoclients", f"{slug}-app")
    assert [r["uid"] for r in child["metadata"]["ownerReferences"]] == [again["metadata"]["uid"]]
    assert child["status"]["clientId"] != old


def test_twenty_tenants_make_no_app_client(
    tenants: Custom, api: ApiClient, aws_settings: Settings, aws_env: bootstrap.Environment
) -> None:
    """Issue 30: a pool holds 1,000 app clients by default (10,000 at most), so a Tenant
    must not take one. 20 Tenants without callback URLs sign in with the shared client:
    the pool has no new client, there is no CognitoClient for them, and each one's Secret
    names the shared client."""
    pool = aws_env.user_pool_id
    before = sorted(all_app_clients(aws_settings, pool))
    assert aws_env.shared_client_id in before
    slugs = [new_tenant(tenants)[0] for _ in range(20)]
    for slug in slugs:
        tenants.wait_condition(PLURAL, slug, timeout=120)
    assert sorted(all_app_clients(aws_settings, pool)) == before
    children = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, tenants.namespace, "cognitoclients"
    )["items"]
    assert not {c["metadata"]["name"] for c in children} & {f"{s}-app" for s in slugs}
    for slug in slugs:
        assert tenants.get(PLURAL, slug)["status"]["clientId"] == aws_env.shared_client_id
        secret = secret_data(api, tenants.namespace, f"{slug}-cognito")
        assert secret is not None and secret["clientId"] == aws_env.shared_client_id
    for slug in slugs:
        tenants.delete(PLURAL, slug)
    for slug in slugs:
        tenants.wait_gone(PLURAL, slug, timeout=60)


class SecretWatch:
    """Reads a Secret over and over in a thread: every clientId it saw, in order, and how
    many reads found no Secret at all."""

    def __init__(self, api: ApiClient, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.seen: list[str] = []
        self.missing = 0
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            data = secret_data(self.api, self.namespace, self.name)
            self.reads += 1
            if data is None:
                self.missing += 1
            elif not self.seen or self.seen[-1] != data["clientId"]:
                self.seen.append(data["clientId"])
            self._stop.wait(0.02)

    def __enter__(self) -> SecretWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_tenant_made_with_its_own_client_moves_to_the_shared_one_and_back(
    tenants: Custom,
    api: ApiClient,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
    live_operator: OperatorProcess,
) -> None:
    """Migration (issue 30): a Tenant the operator made before the shared client (this very
    operator without HERD_COGNITO_SHARED_CLIENT_ID, as every earlier release ran: a child
    CognitoClient and an app client of its own) moves to the shared client when the operator
    that has it starts: its Secret is handed over in one patch and only then is its child
    deleted, with its app client. A Secret read all along never finds it missing. Given
    callback URLs later, it gets a client of its own again, the Secret handed over the same
    way."""
    pool = aws_env.user_pool_id
    live_operator.stop()
    live_operator.env["HERD_COGNITO_SHARED_CLIENT_ID"] = ""
    try:
        live_operator.start()
        slug, _ = new_tenant(tenants)
        tenants.wait_condition(PLURAL, slug, timeout=90)
        old = tenants.get("cognitoclients", f"{slug}-app")["status"]["clientId"]
        assert app_clients(aws_settings, pool, slug) == [old]
        assert secret_data(api, tenants.namespace, f"{slug}-cognito")["clientId"] == old  # type: ignore[index]
        live_operator.stop()
    finally:
        live_operator.env["HERD_COGNITO_SHARED_CLIENT_ID"] = aws_env.shared_client_id
    with SecretWatch(api, tenants.namespace, f"{slug}-cognito") as watch:
        live_operator.start()  # its resume finds the Tenant to move
        step = tenants.wait_condition(PLURAL, slug, "AppClient", reason="Shared", timeout=90)
        assert "shared client herd-tenants" in step["message"]
        tenants.wait_gone("cognitoclients", f"{slug}-app", timeout=90)
        wait_for(lambda: app_clients(aws_settings, pool, slug) == [], 30, "own client deleted")
        time.sleep(1)  # the garbage collector had its chance at the Secret
    assert watch.reads > 10 and watch.missing == 0, (watch.reads, watch.missing)
    assert watch.seen == [old, aws_env.shared_client_id]
    status = tenants.get(PLURAL, slug)["status"]
    assert status["clientId"] == aws_env.shared_client_id and status["phase"] == "Ready"
    owners = (
        client.CoreV1Api(api)
        .read_namespaced_secret(f"{slug}-cognito", tenants.namespace)
        .metadata.owner_references
    )
    assert [(o.kind, o.uid) for o in owners] == [
        (KIND, tenants.get(PLURAL, slug)["metadata"]["uid"])
    ]
    assert "AppClientMigrated" in {r for _, r, _ in events(api, tenants.namespace, slug)}

    # And back: callback URLs give it its own client, which takes the Secret over.
    with SecretWatch(api, tenants.namespace, f"{slug}-cognito") as watch:
        tenants.patch(PLURAL, slug, CALLBACKS)
        wait_for(
            lambda: (
                tenants.condition(PLURAL, slug, "AppClient")
                .get("message", "")
                .startswith(f"CognitoClient {slug}-app")
                and tenants.condition(PLURAL, slug, "AppClient").get("status") == "True"
            ),
            90,
            "the Tenant on its own client again",
        )
        mine = tenants.get("cognitoclients", f"{slug}-app")["status"]["clientId"]
        wait_for(lambda: watch.seen[-1] == mine, 30, "the Secret naming its own client")
    assert watch.missing == 0 and watch.seen == [aws_env.shared_client_id, mine]
    assert app_clients(aws_settings, pool, slug) == [mine]
    tenants.delete(PLURAL, slug)
    tenants.wait_gone(PLURAL, slug, timeout=60)
