"""SES's sandbox, through the real parts: the local AWS put in the sandbox (its quota front,
as AWS's grant of production access takes an account out of it), the session's operator and
worker processes, the API server. A Tenant whose admin address is unverified ends
WelcomeEmailSent=False reason SESSandbox, naming the domain and the ways out, once: the job
is not retried and no email goes. A verified address is sent to. Verified later, the
resend annotation sends the refused one, once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core import aws
from herd_core.constants import GROUP, RESEND_WELCOME_ANNOTATION, VERSION
from herd_devkit.local import bootstrap
from herd_devkit.local.aws_quotas import (
    PRODUCTION_SEND_QUOTA,
    PRODUCTION_SEND_RATE,
    REFUSALS_PATH,
    SANDBOX_PATH,
)
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings

from .helpers import Custom, queue_empty, wait_for

KIND, PLURAL = "Tenant", "tenants"
pytestmark = pytest.mark.usefixtures("live_operator", "worker")


@pytest.fixture
def sandbox(moto: MotoServer) -> Iterator[None]:
    """The local AWS in the SES sandbox for the test. Its sending figures stay production's:
    the session has sent more than the sandbox's 200 a day already, and the worker paces at
    the rate it read at its start (those quotas have tests of their own, test_aws_quotas)."""
    url = f"{moto.url}{SANDBOX_PATH}"
    figures = {"ses.sending_quota": PRODUCTION_SEND_QUOTA, "ses.sending_rate": PRODUCTION_SEND_RATE}
    before = httpx.post(url, json={"sandbox": True, "quotas": figures}, timeout=10).json()
    try:
        yield
    finally:
        httpx.post(url, json=before, timeout=10).raise_for_status()


@pytest.fixture
def tenants(api: ApiClient, tenants_ns: str) -> Custom:
    return Custom(api, tenants_ns)


def new_tenant(tenants: Custom, email: str) -> str:
    slug = email.split("@")[1].split(".")[0]
    spec = {"displayName": "Sandbox", "slug": slug, "adminEmail": email, "plan": "standard"}
    tenants.create(KIND, PLURAL, slug, spec)
    return slug


def emails_to(moto: MotoServer, address: str) -> list[dict[str, Any]]:
    return [
        m
        for m in moto.data()["ses"].get("TemplateMessage", [])
        if address in m["destinations"]["ToAddresses"]
    ]


def sandbox_refusals(moto: MotoServer) -> int:
    rows = httpx.get(f"{moto.url}{REFUSALS_PATH}", timeout=10).json()
    return sum(r["count"] for r in rows if r["reached"] == "sandbox")


def test_the_sandbox_is_read_as_aws_answers_it(sandbox: None, aws_settings: Settings) -> None:
    account = aws.client("sesv2", aws_settings).get_account()
    assert account["ProductionAccessEnabled"] is False
    assert account["SendQuota"]["MaxSendRate"] == PRODUCTION_SEND_RATE


def test_an_unverified_admin_ends_sessandbox_once_and_a_verified_one_is_sent_to(
    sandbox: None,
    tenants: Custom,
    moto: MotoServer,
    aws_settings: Settings,
    aws_env: bootstrap.Environment,
    api: ApiClient,
) -> None:
    ses = aws.client("ses", aws_settings)
    tag = uuid.uuid4().hex[:8]
    verified = f"admin@sbx-ok-{tag}.example.com"
    ses.verify_email_identity(EmailAddress=verified)
    refused_before = sandbox_refusals(moto)

    unverified = f"admin@sbx-no-{tag}.example.com"
    slug = new_tenant(tenants, unverified)
    ok_slug = new_tenant(tenants, verified)

    # The verified address is sent to, as out of the sandbox.
    tenants.wait_condition(PLURAL, ok_slug, "WelcomeEmailSent", timeout=90)
    assert len(emails_to(moto, verified)) == 1

    # The unverified one: a clear condition on a Ready Tenant, naming the domain only.
    refused = tenants.wait_condition(
        PLURAL, slug, "WelcomeEmailSent", status="False", reason="SESSandbox", timeout=90
    )
    domain = unverified.split("@")[1]
    assert f"address at {domain} is not one" in refused["message"]
    assert unverified not in refused["message"]
    assert "request production access" in refused["message"]
    assert RESEND_WELCOME_ANNOTATION in refused["message"]
    status = tenants.get(PLURAL, slug)["status"]
    assert status["phase"] == "Ready"
    assert "sentAt" not in status["welcomeEmail"]
    # Never a retry loop: refused once, the job gone from the queue, still once a while on.
    sqs = aws.client("sqs", aws_settings)
    wait_for(lambda: queue_empty(sqs, aws_env.email_queue_url), 30, "job consumed")
    assert sandbox_refusals(moto) - refused_before == 1
    time.sleep(5)  # an absence: what a retry (backoff 0.25 s in the tests) would have done
    assert sandbox_refusals(moto) - refused_before == 1
    assert emails_to(moto, unverified) == []

    # Verified (its domain), the annotation sends it, once per value.
    ses.verify_domain_identity(Domain=domain)
    annotate(api, tenants.namespace, slug, "1")
    tenants.wait_condition(PLURAL, slug, "WelcomeEmailSent", timeout=90)
    assert len(emails_to(moto, unverified)) == 1
    assert tenants.get(PLURAL, slug)["status"]["welcomeEmail"]["resendOf"] == "1"
    assert sandbox_refusals(moto) - refused_before == 1


def annotate(api: ApiClient, namespace: str, name: str, value: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": {RESEND_WELCOME_ANNOTATION: value}}},
    )
