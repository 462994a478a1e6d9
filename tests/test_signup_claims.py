"""Email uniqueness by construction (herd_api.claims): the real API process under its chart's
ServiceAccount, against the embedded cluster, with the garbage collector of the real
kube-controller-manager."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from herd_api.claims import EMAIL, KEY, claim_name
from herd_core.constants import GROUP, VERSION

from .helpers import ApiProcess, wait_for
from .test_api import post, signup

pytestmark = pytest.mark.usefixtures("live_operator")


def tenants_of(api: ApiClient, namespace: str, email: str) -> list[str]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants"
    )["items"]
    return [t["metadata"]["name"] for t in items if t["spec"]["adminEmail"] == email]


def claim(api: ApiClient, namespace: str, name: str) -> Any:
    try:
        return client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise


def burst(
    api_server: ApiProcess, bodies: list[dict[str, Any]], key: str | None = None
) -> list[int]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return [r.status_code for r in pool.map(lambda b: post(api_server, b, key), bodies)]


def test_twenty_concurrent_signups_of_one_email_make_one_tenant(
    api_server: ApiProcess, api: ApiClient, tenants_ns: str
) -> None:
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    bodies = [signup(adminEmail=email) for _ in range(20)]
    codes = burst(api_server, bodies)
    # Every one gets the answer a new signup gets (whether an email has signed up is not
    # told), and exactly one Tenant is made.
    assert codes == [202] * 20
    made = tenants_of(api, tenants_ns, email)
    assert len(made) == 1, made
    held = wait_for(
        lambda: (
            (c := claim(api, tenants_ns, claim_name(EMAIL, email))).metadata.owner_references and c
        ),
        30,
        "claim owned by its Tenant",
    )
    assert held.data == {"slug": made[0]}
    tenant = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, tenants_ns, "tenants", made[0]
    )
    assert [o.uid for o in held.metadata.owner_references] == [tenant["metadata"]["uid"]]
    # The email is never on the claim, only its hash.
    assert email not in str(held.to_dict())


def test_one_idempotency_key_sent_twenty_times_at_once_makes_one_tenant(
    api_server: ApiProcess, api: ApiClient, tenants_ns: str
) -> None:
    body, key = signup(), str(uuid.uuid4())
    assert burst(api_server, [body] * 20, key) == [202] * 20
    assert tenants_of(api, tenants_ns, body["adminEmail"]) == [body["slug"]]
    held = claim(api, tenants_ns, claim_name(KEY, key))
    assert held.data["slug"] == body["slug"]
    assert post(api_server, signup(), key).status_code == 422


def test_a_taken_slug_releases_the_email_it_claimed(
    api_server: ApiProcess, api: ApiClient, tenants_ns: str
) -> None:
    first = signup()
    assert post(api_server, first).status_code == 202
    loser = signup(slug=first["slug"])
    assert post(api_server, loser).status_code == 409
    assert claim(api, tenants_ns, claim_name(EMAIL, loser["adminEmail"])) is None
    # ... so that email can still sign up under a free slug.
    again = signup(adminEmail=loser["adminEmail"])
    assert post(api_server, again).status_code == 202
    assert tenants_of(api, tenants_ns, loser["adminEmail"]) == [again["slug"]]
    # The first signup's claim is untouched by a request for its slug under its own email.
    same = {**first, "displayName": "Someone Else"}
    assert post(api_server, same).status_code == 409
    assert claim(api, tenants_ns, claim_name(EMAIL, first["adminEmail"])).data == {
        "slug": first["slug"]
    }


def test_deleting_a_tenant_frees_its_email(
    api_server: ApiProcess, api: ApiClient, tenants_ns: str
) -> None:
    body = signup()
    assert post(api_server, body).status_code == 202
    name = claim_name(EMAIL, body["adminEmail"])
    wait_for(lambda: claim(api, tenants_ns, name).metadata.owner_references, 30, "owned claim")
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, tenants_ns, "tenants", body["slug"]
    )
    # The garbage collector takes the claim with its Tenant.
    wait_for(lambda: claim(api, tenants_ns, name) is None, 120, "claim collected")
    again = signup(adminEmail=body["adminEmail"])
    assert post(api_server, again).status_code == 202
    assert tenants_of(api, tenants_ns, body["adminEmail"]) == [again["slug"]]


@pytest.fixture(scope="module")
def short_ttl_api(
    api_env: dict[str, str], tenants_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """A second API process whose claims wait only 8 s for their Tenant."""
    proc = ApiProcess(
        env={**api_env, "HERD_SIGNUP_CLAIM_TTL": "8"},
        log=tmp_path_factory.mktemp("api-ttl") / "api.log",
    )
    proc.env["HERD_PUBLIC_URL"] = proc.url
    proc.start()
    yield proc
    proc.stop()


def test_a_claim_whose_tenant_never_came_is_taken_over_once(
    short_ttl_api: ApiProcess, api: ApiClient, tenants_ns: str
) -> None:
    email = f"stale-{uuid.uuid4().hex[:8]}@example.com"
    name = claim_name(EMAIL, email)
    # As an API that died between its claim and its Tenant leaves it.
    client.CoreV1Api(api).create_namespaced_config_map(
        tenants_ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name), data={"slug": f"gone-{uuid.uuid4().hex[:8]}"}
        ),
    )
    # Within its wait it holds: nothing is made.
    early = signup(adminEmail=email)
    assert post(short_ttl_api, early).status_code == 202
    assert tenants_of(api, tenants_ns, email) == []

    def stale() -> bool:
        created = claim(api, tenants_ns, name).metadata.creation_timestamp
        return bool((created.now(created.tzinfo) - created).total_seconds() > 9)

    wait_for(stale, 30, "claim older than its wait")
    # Ten signups race for the stale claim: one takes it over, one Tenant is made.
    assert burst(short_ttl_api, [signup(adminEmail=email) for _ in range(10)]) == [202] * 10
    made = tenants_of(api, tenants_ns, email)
    assert len(made) == 1, made
    taken = claim(api, tenants_ns, name)
    assert taken.data == {"slug": made[0]}
    # Taken over anew: its wait starts again, so the next signup cannot find it stale before
    # its Tenant is made (a claim that kept the old creation time was taken twice).
    assert not stale(), taken.metadata.creation_timestamp
