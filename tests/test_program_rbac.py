"""The API and the worker run under their charts' ServiceAccounts (see the `identities`
fixture): everything test_api, test_worker and test_tenant make them do goes through that RBAC.
Here: their whole job once more, end to end, with no 403 in their logs, and SubjectAccessReviews
proving what each may not do."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from .conftest import PROGRAMS_NAMESPACE
from .helpers import ApiProcess, Custom, WorkerProcess, may
from .test_api import token

GROUP = "platform.herd-itt.com"


def allowed(
    api: ApiClient, account: str, verb: str, resource: str, namespace: str, group: str = GROUP
) -> bool:
    return may(api, PROGRAMS_NAMESPACE, account, verb, group, resource, namespace)


def allowed_by_name(
    api: ApiClient, account: str, verb: str, resource: str, ns: str, name: str
) -> bool:
    """As `allowed`, for the one object `name` (RBAC's resourceNames)."""
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{PROGRAMS_NAMESPACE}:{account}",
                groups=["system:serviceaccounts", f"system:serviceaccounts:{PROGRAMS_NAMESPACE}"],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=GROUP, resource=resource, namespace=ns, name=name
                ),
            )
        )
    )
    return bool(review.status.allowed)


@pytest.mark.slow
def test_signup_email_admin_under_the_programs_own_identities(
    api_server: ApiProcess,
    worker: WorkerProcess,
    api: ApiClient,
    tenants_ns: str,
    users: dict[str, tuple[str, str]],
    identities: dict[str, Path],
) -> None:
    assert api_server.env["KUBECONFIG"] == str(identities["herd-api"])
    assert worker.env["KUBECONFIG"] == str(identities["herd-workers"])
    slug = f"rbac-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(
        f"{api_server.url}/v1/signups",
        timeout=30,
        json={
            "displayName": "Own Identity Co",
            "slug": slug,
            "adminEmail": f"owner@{slug}.example.com",
            "plan": "starter",
        },
    )
    assert answer.status_code == 202, answer.text
    tenants = Custom(api, tenants_ns)
    tenants.wait_condition("tenants", slug, timeout=120)
    # The worker read the Tenant and reported the email into its status, with its own token.
    tenants.wait_condition("tenants", slug, "WelcomeEmailSent", timeout=90)
    assert httpx.get(f"{api_server.url}/v1/signups/{slug}", timeout=10).status_code == 200
    assert httpx.get(f"{api_server.url}/readyz", timeout=10).status_code == 200

    headers = {"Authorization": f"Bearer {token(api_server, users['admin'])}"}
    listed = httpx.get(f"{api_server.url}/v1/tenants", headers=headers, timeout=30)
    assert listed.status_code == 200 and slug in listed.text
    deleted = httpx.delete(f"{api_server.url}/v1/tenants/{slug}", headers=headers, timeout=30)
    assert deleted.status_code == 202, deleted.text
    tenants.wait_gone("tenants", slug, timeout=120)
    for process in (api_server, worker):
        log = process.log_text()  # the API server's own words for a missing permission
        assert "is forbidden: User" not in log and "Forbidden" not in log, log[-3000:]


def test_each_program_may_do_only_its_job(
    api: ApiClient, tenants_ns: str, identities: dict[str, Path]
) -> None:
    may = {
        "herd-api": [
            ("create", "tenants"),
            ("get", "tenants"),
            ("list", "tenants"),
            ("delete", "tenants"),
        ],
        "herd-workers": [("get", "tenants"), ("patch", "tenants/status")],
    }
    may_not = {
        "herd-api": [
            ("get", "secrets", ""),
            ("list", "secrets", ""),
            ("patch", "tenants/status", GROUP),
            ("patch", "tenants", GROUP),
            ("create", "cognitoclients", GROUP),
            ("create", "pods", ""),
            # Claims are named, never listed or watched.
            ("list", "configmaps", ""),
            ("watch", "configmaps", ""),
        ],
        "herd-workers": [
            ("delete", "tenants", GROUP),
            ("create", "tenants", GROUP),
            ("list", "tenants", GROUP),
            ("patch", "tenants", GROUP),
            ("get", "secrets", ""),
        ],
    }
    for account, rules in may.items():
        for verb, resource in rules:
            assert allowed(api, account, verb, resource, tenants_ns), (account, verb, resource)
            # Only where the Tenants live.
            assert not allowed(api, account, verb, resource, "default"), (account, verb, resource)
    # Signup claims (herd_api.claims), only where the Tenants live.
    for verb in ("get", "create", "update", "patch", "delete"):
        assert allowed(api, "herd-api", verb, "configmaps", tenants_ns, ""), verb
        assert not allowed(api, "herd-api", verb, "configmaps", "default", ""), verb
    # The admin's tenant detail reads the Tenants' Events; nothing else of the core group.
    assert allowed(api, "herd-api", "list", "events", tenants_ns, "")
    assert not allowed(api, "herd-api", "create", "events", tenants_ns, "")
    assert not allowed(api, "herd-api", "list", "events", "default", "")
    # The verification email's SESTemplate, read by its one name (its SES name); no other.
    assert allowed_by_name(
        api, "herd-api", "get", "sestemplates", tenants_ns, "signup-verification"
    )
    assert not allowed_by_name(api, "herd-api", "get", "sestemplates", tenants_ns, "welcome")
    for verb in ("list", "watch", "update", "patch", "create", "delete"):
        assert not allowed(api, "herd-api", verb, "sestemplates", tenants_ns), verb
    for account, denied in may_not.items():
        for verb, resource, group in denied:
            assert not allowed(api, account, verb, resource, tenants_ns, group), (
                account,
                verb,
                resource,
            )
