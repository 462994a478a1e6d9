"""CognitoClient through the real parts: API server, operator process, moto, Secrets."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core import aws
from herd_devkit.local.tools import binary
from herd_devkit.settings import Settings

from .conftest import ADOPTING, Cluster
from .faultproxy import FaultProxy
from .helpers import Custom, OperatorProcess, events, wait_for

KIND, PLURAL = "CognitoClient", "cognitoclients"
pytestmark = pytest.mark.usefixtures("live_operator")


def unique(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "clientName": name,
        "secretName": f"{name}-credentials",
        "explicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **extra,
    }


def idp(settings: Settings) -> Any:
    return aws.client("cognito-idp", settings)


def clients_named(settings: Settings, pool: str, name: str) -> list[str]:
    found = idp(settings).list_user_pool_clients(UserPoolId=pool, MaxResults=60)
    return [c["ClientId"] for c in found["UserPoolClients"] if c["ClientName"] == name]


def secret_data(api: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def test_public_client_credentials_land_in_a_secret(
    objects: Custom, api: ApiClient, aws_settings: Settings, user_pool: str
) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    objects.wait_condition(PLURAL, name)
    status = objects.get(PLURAL, name)["status"]
    assert clients_named(aws_settings, user_pool, name) == [status["clientId"]]
    assert status["userPoolId"] == user_pool
    assert secret_data(api, objects.namespace, f"{name}-credentials") == {
        "clientId": status["clientId"],
        "userPoolId": user_pool,
        "issuerURL": f"https://cognito-idp.eu-west-1.amazonaws.com/{user_pool}",
    }
    owner = (
        client.CoreV1Api(api)
        .read_namespaced_secret(f"{name}-credentials", objects.namespace)
        .metadata.owner_references[0]
    )
    assert (owner.kind, owner.name, owner.controller) == (KIND, name, True)

    # One Event for the create, naming the Secret; a Secret of a new name gets its own.
    wait_for(
        lambda: [r for _, r, _ in events(api, objects.namespace, name)] == ["Created"],
        30,
        "the Created event (kopf posts it from its queue)",
    )
    ((_, _, message),) = events(api, objects.namespace, name)
    assert f"Secret {name}-credentials" in message and status["clientId"] in message
    objects.patch(PLURAL, name, {"secretName": f"{name}-renamed"})
    wait_for(
        lambda: (
            secret_data(api, objects.namespace, f"{name}-renamed") is not None
            and secret_data(api, objects.namespace, f"{name}-credentials") is None
        ),
        60,
        "the credentials under the new name, the old Secret gone",
    )
    assert secret_data(api, objects.namespace, f"{name}-renamed") == {
        "clientId": status["clientId"],
        "userPoolId": user_pool,
        "issuerURL": f"https://cognito-idp.eu-west-1.amazonaws.com/{user_pool}",
    }
    wait_for(
        lambda: (
            ("Normal", "SecretWritten", f"wrote credentials to Secret {name}-renamed")
            in events(api, objects.namespace, name)
        ),
        30,
        "the SecretWritten event",
    )


def test_client_secret_stays_in_the_secret(
    objects: Custom,
    api: ApiClient,
    aws_settings: Settings,
    user_pool: str,
    live_operator: OperatorProcess,
) -> None:
    name = unique()
    objects.create(
        KIND,
        PLURAL,
        name,
        spec(
            name,
            generateSecret=True,
            allowedOAuthFlows=["code"],
            allowedOAuthScopes=["openid"],
            callbackURLs=["https://app.example.com/cb"],
        ),
    )
    objects.wait_condition(PLURAL, name)
    obj = objects.get(PLURAL, name)
    described = idp(aws_settings).describe_user_pool_client(
        UserPoolId=user_pool, ClientId=obj["status"]["clientId"]
    )["UserPoolClient"]
    secret = described["ClientSecret"]
    assert described["AllowedOAuthFlows"] == ["code"]
    assert described["CallbackURLs"] == ["https://app.example.com/cb"]
    data = secret_data(api, objects.namespace, f"{name}-credentials")
    assert data is not None and data["clientSecret"] == secret
    # Never in the object, its events, or the operator's log.
    assert secret not in json.dumps(obj)
    assert all(secret not in m for _, _, m in events(api, objects.namespace, name))
    assert secret not in live_operator.log_text()


def test_update_in_place(objects: Custom, aws_settings: Settings, user_pool: str) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    objects.wait_condition(PLURAL, name)
    client_id = objects.get(PLURAL, name)["status"]["clientId"]
    objects.patch(
        PLURAL,
        name,
        {"explicitAuthFlows": ["ALLOW_USER_SRP_AUTH"], "tokenValidity": {"accessTokenMinutes": 15}},
    )

    def updated() -> bool:
        c = idp(aws_settings).describe_user_pool_client(UserPoolId=user_pool, ClientId=client_id)[
            "UserPoolClient"
        ]
        return bool(
            c["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH"] and c["AccessTokenValidity"] == 15
        )

    wait_for(updated, 30, "client updated in Cognito")
    assert objects.get(PLURAL, name)["status"]["clientId"] == client_id
    assert clients_named(aws_settings, user_pool, name) == [client_id]


def test_deleted_secret_is_recreated(objects: Custom, api: ApiClient) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    objects.wait_condition(PLURAL, name)
    secret_name = f"{name}-credentials"
    before = secret_data(api, objects.namespace, secret_name)
    client.CoreV1Api(api).delete_namespaced_secret(secret_name, objects.namespace)
    assert (
        wait_for(lambda: secret_data(api, objects.namespace, secret_name), 30, "Secret recreated")
        == before
    )


def test_drift_is_repaired(
    objects: Custom, api: ApiClient, aws_settings: Settings, user_pool: str
) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    objects.wait_condition(PLURAL, name)
    client_id = objects.get(PLURAL, name)["status"]["clientId"]
    idp(aws_settings).update_user_pool_client(
        UserPoolId=user_pool,
        ClientId=client_id,
        ClientName=name,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
    )

    def restored() -> bool:
        c = idp(aws_settings).describe_user_pool_client(UserPoolId=user_pool, ClientId=client_id)[
            "UserPoolClient"
        ]
        return sorted(c["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"]

    wait_for(restored, 30, "auth flows put back")
    wait_for(
        lambda: any(r == "DriftRepaired" for _, r, _ in events(api, objects.namespace, name)),
        30,
        "DriftRepaired event",
    )


def test_delete_and_retain(
    objects: Custom, api: ApiClient, aws_settings: Settings, user_pool: str
) -> None:
    gone, kept = unique(), unique()
    objects.create(KIND, PLURAL, gone, spec(gone))
    objects.create(KIND, PLURAL, kept, spec(kept, deletionPolicy="Retain"))
    objects.wait_condition(PLURAL, gone)
    objects.wait_condition(PLURAL, kept)
    objects.delete(PLURAL, gone)
    objects.delete(PLURAL, kept)
    objects.wait_gone(PLURAL, gone)
    objects.wait_gone(PLURAL, kept)
    assert clients_named(aws_settings, user_pool, gone) == []
    assert len(clients_named(aws_settings, user_pool, kept)) == 1
    # The Secret follows its owner through garbage collection.
    wait_for(
        lambda: secret_data(api, objects.namespace, f"{gone}-credentials") is None,
        60,
        "Secret garbage-collected",
    )


def test_adoption_is_explicit_and_only_where_allowed(
    objects: Custom,
    api: ApiClient,
    aws_settings: Settings,
    user_pool: str,
    make_namespace: Callable[[str], str],
) -> None:
    name = unique()
    existing = idp(aws_settings).create_user_pool_client(UserPoolId=user_pool, ClientName=name)[
        "UserPoolClient"
    ]["ClientId"]
    objects.create(KIND, PLURAL, name, spec(name))
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AlreadyExists")
    assert "spec.adopt" in cond["message"]
    # Asking is not enough: this namespace may not adopt what Herd did not create for it.
    objects.patch(PLURAL, name, {"adopt": True})
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AdoptionRefused")
    assert "HERD_ADOPTION_NAMESPACES" in cond["message"]
    assert "clientId" not in objects.get(PLURAL, name)["status"]
    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    assert clients_named(aws_settings, user_pool, name) == [existing]

    allowed = Custom(api, make_namespace(ADOPTING))
    allowed.create(KIND, PLURAL, name, spec(name, adopt=True))
    allowed.wait_condition(PLURAL, name)
    assert allowed.get(PLURAL, name)["status"]["clientId"] == existing
    assert clients_named(aws_settings, user_pool, name) == [existing]


def test_another_namespace_never_adopts_a_held_client(
    objects: Custom,
    api: ApiClient,
    aws_settings: Settings,
    user_pool: str,
    make_namespace: Callable[[str], str],
) -> None:
    """Even a namespace allowed to adopt cannot take a client another resource holds."""
    name = unique()
    objects.create(
        KIND,
        PLURAL,
        name,
        spec(
            name,
            callbackURLs=["https://a.example.com/cb"],
            allowedOAuthFlows=["code"],
            allowedOAuthScopes=["openid"],
        ),
    )
    objects.wait_condition(PLURAL, name)
    held = objects.get(PLURAL, name)["status"]["clientId"]

    thief = Custom(api, make_namespace(ADOPTING))
    thief.create(
        KIND,
        PLURAL,
        name,
        spec(
            name,
            adopt=True,
            callbackURLs=["https://evil.example.com/cb"],
            allowedOAuthFlows=["code"],
            allowedOAuthScopes=["openid"],
        ),
    )
    cond = thief.wait_condition(PLURAL, name, "Ready", "False", reason="AdoptionRefused")
    assert f"{objects.namespace}/{name}" in cond["message"]
    assert secret_data(api, thief.namespace, f"{name}-credentials") is None
    described = idp(aws_settings).describe_user_pool_client(UserPoolId=user_pool, ClientId=held)
    assert described["UserPoolClient"]["CallbackURLs"] == ["https://a.example.com/cb"]
    # Deleting the refused one deletes nothing in Cognito.
    thief.delete(PLURAL, name)
    thief.wait_gone(PLURAL, name)
    assert clients_named(aws_settings, user_pool, name) == [held]
    objects.wait_condition(PLURAL, name)


def test_a_foreign_secret_is_never_overwritten(
    objects: Custom, api: ApiClient, aws_settings: Settings, user_pool: str
) -> None:
    name = unique()
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        objects.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="db-credentials"),
            string_data={"password": "hunter2", "username": "app"},
        ),
    )
    objects.create(KIND, PLURAL, name, {**spec(name), "secretName": "db-credentials"})
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="SecretConflict")
    assert "db-credentials" in cond["message"]
    secret = core.read_namespaced_secret("db-credentials", objects.namespace)
    assert secret_data(api, objects.namespace, "db-credentials") == {
        "password": "hunter2",
        "username": "app",
    }
    assert not secret.metadata.owner_references
    # Checked before anything in AWS: no app client was made for it.
    assert clients_named(aws_settings, user_pool, name) == []

    # Once the foreign Secret is gone, the retry goes on by itself.
    core.delete_namespaced_secret("db-credentials", objects.namespace)
    objects.wait_condition(PLURAL, name, timeout=60)
    data = secret_data(api, objects.namespace, "db-credentials")
    assert data is not None and data["clientId"] == objects.get(PLURAL, name)["status"]["clientId"]


def test_transient_failures_then_success(
    objects: Custom, api: ApiClient, proxy: FaultProxy, aws_settings: Settings, user_pool: str
) -> None:
    name = unique()
    rule = proxy.fail("CreateUserPoolClient", times=2, fault="unavailable", contains=name)
    try:
        objects.create(KIND, PLURAL, name, spec(name))
        objects.wait_condition(PLURAL, name)
    finally:
        proxy.clear()
    assert rule.hits == 2
    assert any(r == "Recoverable" for _, r, _ in events(api, objects.namespace, name))
    assert len(clients_named(aws_settings, user_pool, name)) == 1


def another_client(settings: Settings, pool: str) -> tuple[str, str]:
    """A client of the pool that no CognitoClient made (as herd-admin): (name, id)."""
    name = unique("victim")
    made = idp(settings).create_user_pool_client(
        UserPoolId=pool,
        ClientName=name,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid"],
        AllowedOAuthFlowsUserPoolClient=True,
        CallbackURLs=["https://victim.example.com/cb"],
    )
    return name, made["UserPoolClient"]["ClientId"]


def untouched(settings: Settings, pool: str, name: str, client_id: str) -> None:
    assert clients_named(settings, pool, name) == [client_id]
    described = idp(settings).describe_user_pool_client(UserPoolId=pool, ClientId=client_id)
    assert described["UserPoolClient"]["CallbackURLs"] == ["https://victim.example.com/cb"]


def thief_spec(name: str) -> dict[str, Any]:
    return spec(
        name,
        allowedOAuthFlows=["code"],
        allowedOAuthScopes=["openid"],
        callbackURLs=["https://evil.example.com/cb"],
    )


def test_a_refused_create_leaves_no_claim_to_take_another_client_by_a_rename(
    objects: Custom, api: ApiClient, proxy: FaultProxy, aws_settings: Settings, user_pool: str
) -> None:
    """N3: Cognito refuses the create (on AWS, a nonexistent OAuth scope does): no client was
    made, so no claim stays behind, and a rename to another client's name is an adoption
    like any other, refused here."""
    victim, victim_id = another_client(aws_settings, user_pool)
    name = unique()
    rule = proxy.fail("CreateUserPoolClient", times=1, fault="invalid", contains=name)
    try:
        objects.create(KIND, PLURAL, name, thief_spec(name))
        objects.wait_condition(PLURAL, name, "Ready", "False", reason="InvalidSpec")
    finally:
        proxy.clear()
    assert rule.hits == 1
    status = objects.get(PLURAL, name)["status"]
    assert not {"creationStarted", "claimedName", "claimedNameFree", "clientId"} & set(status)

    objects.patch(PLURAL, name, {"clientName": victim})
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AlreadyExists")
    assert "spec.adopt" in cond["message"]
    assert "clientId" not in objects.get(PLURAL, name)["status"]
    assert secret_data(api, objects.namespace, f"{name}-credentials") is None
    untouched(aws_settings, user_pool, victim, victim_id)


def test_a_create_of_unknown_outcome_resumes_only_the_name_it_claimed(
    objects: Custom, api: ApiClient, proxy: FaultProxy, aws_settings: Settings, user_pool: str
) -> None:
    """A create whose answer never came (a 503) may have landed: its claim stands, for its
    own name only. Renamed meanwhile, the object finds nothing under its claim and meets the
    new name's client as any other: not its own."""
    victim, victim_id = another_client(aws_settings, user_pool)
    name = unique()
    proxy.fail("CreateUserPoolClient", times=1000, fault="unavailable", contains=name)
    try:
        objects.create(KIND, PLURAL, name, thief_spec(name))
        status = wait_for(
            lambda: (
                (st := objects.get(PLURAL, name).get("status") or {}).get("creationStarted")
                and objects.condition(PLURAL, name, "Synced").get("reason") == "Recoverable"
                and st
            ),
            60,
            "a claim, its create failing with 503",
        )
        objects.patch(PLURAL, name, {"clientName": victim})
        objects.wait_condition(PLURAL, name, "Ready", "False", reason="AlreadyExists")
    finally:
        proxy.clear()
    assert (status.get("claimedName"), status.get("claimedNameFree")) == (name, True)
    status = objects.get(PLURAL, name)["status"]
    assert not {"creationStarted", "claimedName", "clientId"} & set(status)
    assert secret_data(api, objects.namespace, f"{name}-credentials") is None
    untouched(aws_settings, user_pool, victim, victim_id)
    # Deleting it deletes nothing in Cognito either.
    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    untouched(aws_settings, user_pool, victim, victim_id)


def test_deleted_with_a_claim_standing_deletes_only_its_own_name(
    objects: Custom, proxy: FaultProxy, aws_settings: Settings, user_pool: str
) -> None:
    """Deletion, too, looks for a cut-short create under the claimed name only: a rename
    after the claim never points it at another client."""
    victim, victim_id = another_client(aws_settings, user_pool)
    name = unique()
    proxy.fail("CreateUserPoolClient", times=1000, fault="unavailable", contains=name)
    try:
        objects.create(KIND, PLURAL, name, thief_spec(name))
        wait_for(
            lambda: (objects.get(PLURAL, name).get("status") or {}).get("creationStarted"),
            60,
            "a claim",
        )
        # Spec and deletion together, before any pass could look at the new name.
        objects.patch(PLURAL, name, {"clientName": victim})
        objects.delete(PLURAL, name)
        objects.wait_gone(PLURAL, name)
    finally:
        proxy.clear()
    untouched(aws_settings, user_pool, victim, victim_id)


def killed_after_the_create(
    objects: Custom,
    proxy: FaultProxy,
    aws_settings: Settings,
    user_pool: str,
    live_operator: OperatorProcess,
) -> str:
    """A new CognitoClient's name, the operator SIGKILLed right after Cognito made its client,
    before its id reached status."""
    name = unique()
    proxy.after("CreateUserPoolClient", live_operator.kill, contains=name)
    try:
        objects.create(KIND, PLURAL, name, spec(name))
        wait_for(lambda: not live_operator.running(), 30, "operator killed")
    finally:
        proxy.clear()
    assert len(clients_named(aws_settings, user_pool, name)) == 1
    assert "clientId" not in (objects.get(PLURAL, name).get("status") or {})
    return name


def test_restart_after_create_before_status(
    objects: Custom,
    proxy: FaultProxy,
    aws_settings: Settings,
    user_pool: str,
    live_operator: OperatorProcess,
) -> None:
    name = killed_after_the_create(objects, proxy, aws_settings, user_pool, live_operator)
    live_operator.start()
    objects.wait_condition(PLURAL, name)
    ids = clients_named(aws_settings, user_pool, name)
    assert ids == [objects.get(PLURAL, name)["status"]["clientId"]]


def test_deleted_while_the_operator_is_down_after_a_create_leaves_no_client(
    objects: Custom,
    proxy: FaultProxy,
    aws_settings: Settings,
    user_pool: str,
    live_operator: OperatorProcess,
) -> None:
    """Deleted before the operator is back: the client's id never reached status, and the
    client still goes with it."""
    name = killed_after_the_create(objects, proxy, aws_settings, user_pool, live_operator)
    objects.delete(PLURAL, name)
    live_operator.start()
    objects.wait_gone(PLURAL, name, timeout=60)
    assert clients_named(aws_settings, user_pool, name) == []


def signed_in(settings: Settings, pool: str, client_id: str) -> tuple[str, str]:
    """A new user of the pool, with custom:tenant, signed in through the client: (email,
    access token)."""
    email, password = f"{unique('user')}@example.com", f"Us3r-{uuid.uuid4().hex[:10]}!"
    cognito = idp(settings)
    cognito.admin_create_user(
        UserPoolId=pool,
        Username=email,
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "custom:tenant", "Value": "mine"},
        ],
    )
    cognito.admin_set_user_password(
        UserPoolId=pool, Username=email, Password=password, Permanent=True
    )
    auth = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    return email, str(auth["AuthenticationResult"]["AccessToken"])


def test_a_client_never_lets_its_users_write_a_custom_attribute(
    objects: Custom, aws_settings: Settings, user_pool: str
) -> None:
    """Without WriteAttributes Cognito lets a user write every mutable attribute on
    themselves, custom:tenant included: every client names them, none custom."""
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name, explicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]))
    objects.wait_condition(PLURAL, name)
    client_id = objects.get(PLURAL, name)["status"]["clientId"]
    described = idp(aws_settings).describe_user_pool_client(
        UserPoolId=user_pool, ClientId=client_id
    )["UserPoolClient"]
    assert described["WriteAttributes"] and "name" in described["WriteAttributes"]
    assert not [a for a in described["WriteAttributes"] if a.startswith("custom:")]
    assert "email" not in described["WriteAttributes"]
    assert not [a for a in described["ReadAttributes"] if a.startswith("custom:")]

    email, token = signed_in(aws_settings, user_pool, client_id)
    with pytest.raises(ClientError) as err:
        idp(aws_settings).update_user_attributes(
            AccessToken=token, UserAttributes=[{"Name": "custom:tenant", "Value": "another"}]
        )
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    idp(aws_settings).update_user_attributes(
        AccessToken=token, UserAttributes=[{"Name": "name", "Value": "Ann"}]
    )
    user = idp(aws_settings).admin_get_user(UserPoolId=user_pool, Username=email)
    attrs = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert (attrs["custom:tenant"], attrs["name"]) == ("mine", "Ann")
    # Nor does it read one, unless its spec asks.
    read = idp(aws_settings).get_user(AccessToken=token)["UserAttributes"]
    assert "custom:tenant" not in {a["Name"] for a in read}


def test_attribute_permissions_from_the_spec(
    objects: Custom, aws_settings: Settings, user_pool: str
) -> None:
    name = unique()
    objects.create(
        KIND,
        PLURAL,
        name,
        spec(
            name,
            explicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
            readAttributes=["email", "custom:tenant"],
            writeAttributes=["locale"],
        ),
    )
    objects.wait_condition(PLURAL, name)
    client_id = objects.get(PLURAL, name)["status"]["clientId"]

    def described() -> dict[str, Any]:
        return idp(aws_settings).describe_user_pool_client(  # type: ignore[no-any-return]
            UserPoolId=user_pool, ClientId=client_id
        )["UserPoolClient"]

    # What the client may write it may read.
    assert sorted(described()["ReadAttributes"]) == ["custom:tenant", "email", "locale"]
    assert described()["WriteAttributes"] == ["locale"]
    _, token = signed_in(aws_settings, user_pool, client_id)
    read = idp(aws_settings).get_user(AccessToken=token)["UserAttributes"]
    assert {a["Name"] for a in read} == {"email", "custom:tenant", "sub"}
    with pytest.raises(ClientError):
        idp(aws_settings).update_user_attributes(
            AccessToken=token, UserAttributes=[{"Name": "name", "Value": "Ann"}]
        )
    objects.patch(PLURAL, name, {"writeAttributes": ["locale", "name"]})
    wait_for(
        lambda: sorted(described()["WriteAttributes"]) == ["locale", "name"],
        30,
        "WriteAttributes updated",
    )


def test_printer_columns(objects: Custom, cluster: Cluster) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    objects.wait_condition(PLURAL, name)
    out = subprocess.run(
        [
            str(binary("kubectl")),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "cogc",
            "-n",
            objects.namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].split()[:6] == ["NAME", "READY", "SYNCED", "CLIENT", "ID", "SECRET"]
    client_id = objects.get(PLURAL, name)["status"]["clientId"]
    assert out[1].split()[:5] == [name, "True", "True", client_id, f"{name}-credentials"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"allowedOAuthFlows": ["code"], "callbackURLs": ["https://x"]},
            "allowedOAuthFlows need allowedOAuthScopes",
        ),
        (
            {"allowedOAuthFlows": ["code"], "allowedOAuthScopes": ["openid"]},
            "the code and implicit OAuth flows need callbackURLs",
        ),
        (
            {"allowedOAuthFlows": ["client_credentials"], "allowedOAuthScopes": ["api/read"]},
            "the client_credentials flow needs generateSecret true",
        ),
        ({"callbackURLs": ["http://evil.example.com"]}, "must be https"),
        ({"explicitAuthFlows": ["ALLOW_EVERYTHING"]}, "spec.explicitAuthFlows"),
        ({"secretName": "Not_A_DNS_Name"}, "spec.secretName"),
        ({"tokenValidity": {"accessTokenMinutes": 1}}, "spec.tokenValidity.accessTokenMinutes"),
        # A user would write it on themselves with nothing but their access token.
        ({"writeAttributes": ["custom:tenant"]}, "spec.writeAttributes[0]"),
        ({"writeAttributes": ["dev:custom:tenant"]}, "spec.writeAttributes[0]"),
        # Empty is Cognito's "every mutable attribute", custom ones included.
        ({"writeAttributes": []}, "spec.writeAttributes"),
        ({"readAttributes": ["custom:"]}, "spec.readAttributes[0]"),
    ],
)
def test_bad_specs_are_rejected(objects: Custom, extra: dict[str, Any], message: str) -> None:
    name = unique()
    with pytest.raises(ApiException) as err:
        objects.create(KIND, PLURAL, name, spec(name, **extra))
    assert err.value.status == 422
    assert message in err.value.body


def test_generate_secret_is_immutable(objects: Custom) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, spec(name))
    with pytest.raises(ApiException) as err:
        objects.patch(PLURAL, name, {"generateSecret": True})
    assert err.value.status == 422
    assert "spec.generateSecret is immutable" in err.value.body
