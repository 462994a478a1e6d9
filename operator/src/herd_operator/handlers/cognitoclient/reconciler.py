"""CognitoClient: a Cognito app client whose id (and secret) live in a Kubernetes Secret.

The client secret is read from Cognito and written only into the Secret: never into spec,
status, events or logs.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import GROUP
from herd_core.errors import AlreadyExists, InvalidSpec, Recoverable, SecretConflict
from herd_operator.clients.cognito import Cognito, issuer_url
from herd_operator.handlers import adoption
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings

KIND = "CognitoClient"
PLURAL = "cognitoclients"
SECRET_LABEL = f"{GROUP}/cognitoclient"
DEFAULT_VALIDITY = {"accessTokenMinutes": 60, "idTokenMinutes": 60, "refreshTokenDays": 30}
_LISTS = (
    "ExplicitAuthFlows",
    "AllowedOAuthFlows",
    "AllowedOAuthScopes",
    "CallbackURLs",
    "LogoutURLs",
    "SupportedIdentityProviders",
    "ReadAttributes",
    "WriteAttributes",
)
# A client's attribute permissions when its spec names none. Cognito's own default (no
# WriteAttributes) lets a user write every mutable attribute on themselves, custom:tenant
# included: so they are always sent, and never name a custom attribute unless asked to read.
PROFILE_ATTRIBUTES = (
    "address",
    "birthdate",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "picture",
    "profile",
    "updated_at",
    "website",
    "zoneinfo",
)
DEFAULT_WRITE = PROFILE_ATTRIBUTES
DEFAULT_READ = (
    *PROFILE_ATTRIBUTES,
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "preferred_username",
)


def pool_id(spec: dict[str, Any], settings: Settings) -> str:
    pool = spec.get("userPoolId") or settings.cognito_user_pool_id
    if not pool:
        raise InvalidSpec(
            "spec.userPoolId is unset and the operator has no default pool "
            "(HERD_COGNITO_USER_POOL_ID)"
        )
    return str(pool)


def params(spec: dict[str, Any]) -> dict[str, Any]:
    """Every field UpdateUserPoolClient takes (it resets the ones it is not given)."""
    flows = sorted(spec.get("allowedOAuthFlows") or [])
    validity = {**DEFAULT_VALIDITY, **(spec.get("tokenValidity") or {})}
    write = sorted(set(spec.get("writeAttributes") or DEFAULT_WRITE))
    if any(":" in name for name in write):  # the CRD refuses them too: never custom:*, dev:*
        raise InvalidSpec("spec.writeAttributes may name standard attributes only")
    return {
        "ClientName": spec["clientName"],
        "ExplicitAuthFlows": sorted(spec.get("explicitAuthFlows") or []),
        "AllowedOAuthFlows": flows,
        "AllowedOAuthScopes": sorted(spec.get("allowedOAuthScopes") or []),
        "AllowedOAuthFlowsUserPoolClient": bool(flows),
        "CallbackURLs": sorted(spec.get("callbackURLs") or []),
        "LogoutURLs": sorted(spec.get("logoutURLs") or []),
        "SupportedIdentityProviders": ["COGNITO"] if flows else [],
        # What the client may write it may read.
        "ReadAttributes": sorted(set(spec.get("readAttributes") or DEFAULT_READ) | set(write)),
        "WriteAttributes": write,
        "AccessTokenValidity": validity["accessTokenMinutes"],
        "IdTokenValidity": validity["idTokenMinutes"],
        "RefreshTokenValidity": validity["refreshTokenDays"],
        "TokenValidityUnits": {
            "AccessToken": "minutes",
            "IdToken": "minutes",
            "RefreshToken": "days",
        },
    }


def differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """Fields of `want` that Cognito holds otherwise (lists compared as sets)."""
    changed = []
    for key, value in want.items():
        current = have.get(key)
        if key in _LISTS:
            if sorted(current or []) != sorted(value):
                changed.append(key)
        elif key == "TokenValidityUnits":
            if any((current or {}).get(k) != v for k, v in value.items()):
                changed.append(key)
        elif current != value:
            changed.append(key)
    return changed


def reconcile(obj: Object, settings: Settings) -> str:
    spec, status = obj.spec, obj.status
    pool = pool_id(spec, settings)
    # Before anything in AWS: a Secret of that name that is not ours is never overwritten.
    if kube.secret_owned_by(obj.namespace, spec["secretName"], obj.uid) is False:
        raise SecretConflict(
            f"Secret {spec['secretName']} already exists and is not this CognitoClient's; it "
            "is left untouched: choose another secretName or delete that Secret"
        )
    want = params(spec)
    cognito = Cognito(settings)
    client_id = status.get("clientId")
    have = cognito.describe_client(pool, client_id) if client_id else None
    if client_id and have is None:
        obj.event(
            "Recreating",
            f"app client {client_id} is gone from the pool; creating it again",
            warning=True,
        )
        client_id = None
    if not client_id:
        # A create answers with the client: no describe after it.
        client_id, have = _create_or_adopt(obj, cognito, pool, want, settings)
        have = have or cognito.describe_client(pool, client_id)
    if have is None:
        raise Recoverable(f"app client {client_id} is not visible yet")
    if bool(have.get("ClientSecret")) != bool(spec.get("generateSecret")):
        raise InvalidSpec(
            "the app client's secret does not match spec.generateSecret "
            "(Cognito cannot add or remove one: use another client)"
        )
    if changed := differences(want, have):
        cognito.update_client(pool, client_id, want)
        obj.event("Updated", f"updated {', '.join(changed)} of app client {client_id}")
    write_secret(obj, pool, client_id, have.get("ClientSecret"), settings)
    return f"app client {client_id} is in sync; credentials in Secret {spec['secretName']}"


def _create_or_adopt(
    obj: Object, cognito: Cognito, pool: str, want: dict[str, Any], settings: Settings
) -> tuple[str, dict[str, Any] | None]:
    """The client's id, and the client itself when this call created it."""
    spec, status = obj.spec, obj.status
    created = None
    # Cognito finds clients by name only through a list of the whole pool. A Tenant's own
    # client (named for its Tenant, whose name is unique) needs that list only to find a
    # create of ours cut short by a crash; under a burst of Tenants, a list per create of a
    # pool that grows with each one was quadratic.
    tenant_child = any(
        o.get("kind") == "Tenant" and o.get("controller")
        for o in obj.body["metadata"].get("ownerReferences") or []
    )
    if tenant_child and not status.get("creationStarted"):
        existing: list[str] = []
    else:
        existing = cognito.clients_named(pool, want["ClientName"])
    if existing and status.get("creationStarted"):
        # Our own create, answered just before a crash: resume with it, never a second one.
        client_id = existing[0]
        obj.event(
            "Created",
            f"found app client {client_id}, created before a restart; credentials go to "
            f"Secret {spec['secretName']}",
        )
    elif existing:
        if not spec.get("adopt"):
            raise AlreadyExists(
                f"an app client named {want['ClientName']} already exists in "
                f"{pool}; set spec.adopt: true to take it over"
            )
        if len(existing) > 1:
            raise InvalidSpec(
                f"{len(existing)} app clients are named {want['ClientName']} in "
                f"{pool}; cannot tell which to adopt"
            )
        client_id = existing[0]
        adoption.check(obj, "clientId", client_id, f"app client {client_id}", settings)
        obj.event(
            "Adopted",
            f"adopted existing app client {client_id}; credentials go to Secret "
            f"{spec['secretName']}",
        )
    else:
        obj.patch_status(creationStarted=cond.now(), userPoolId=pool)
        obj.flush()  # before the create: a restart knows a create may have landed
        created = cognito.create_client(pool, want, bool(spec.get("generateSecret")))
        client_id = str(created["ClientId"])
        # The id goes to status with the outcome, one write later, not in a write of its own:
        # until then creationStarted stands, and a restart finds the client by its name.
        obj.event(
            "Created",
            f"created app client {client_id} in {pool}; credentials go to Secret "
            f"{spec['secretName']}",
        )
    obj.patch_status(clientId=client_id, userPoolId=pool, creationStarted=None)
    return client_id, created


def write_secret(
    obj: Object, pool: str, client_id: str, secret: str | None, settings: Settings
) -> None:
    spec, status = obj.spec, obj.status
    data = {
        "clientId": client_id,
        "userPoolId": pool,
        "issuerURL": issuer_url(settings.aws_region, pool),
    }
    if secret:
        data["clientSecret"] = secret
    labels = {"app.kubernetes.io/managed-by": "herd-operator", SECRET_LABEL: obj.name}
    kube.apply_secret(obj.namespace, spec["secretName"], data, labels, obj.owner_reference())
    old = status.get("secretName")
    if old and old != spec["secretName"]:  # the first one is named in Created or Adopted
        obj.event("SecretWritten", f"wrote credentials to Secret {spec['secretName']}")
    if old and old != spec["secretName"] and kube.secret_owned_by(obj.namespace, old, obj.uid):
        try:
            kube.core().delete_namespaced_secret(old, obj.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
    if old != spec["secretName"]:
        obj.patch_status(secretName=spec["secretName"])


def repair_drift(obj: Object, settings: Settings) -> bool:
    """Put changed fields back; True when the client is gone and a full reconcile must
    create it again."""
    status = obj.status
    if status.get("observedGeneration") != obj.generation or not cond.is_true(
        status.get("conditions"), cond.READY
    ):
        return False
    pool, client_id = status.get("userPoolId"), status.get("clientId")
    if not pool or not client_id:
        return False
    cognito = Cognito(settings)
    have = cognito.describe_client(pool, client_id)
    if have is None:
        return True
    want = params(obj.spec)
    if changed := differences(want, have):
        cognito.update_client(pool, client_id, want)
        obj.event(
            "DriftRepaired",
            f"{', '.join(changed)} of app client {client_id} changed outside Herd; put back",
            warning=True,
        )
        obj.patch_status(lastSyncedTime=cond.now())
    # One request when all is well (a test-only patch: the operator never reads Secrets);
    # a Secret that is gone is written again, one that is not ours is refused as at create.
    if kube.secret_owned_by(obj.namespace, obj.spec["secretName"], obj.uid) is not True:
        write_secret(obj, pool, client_id, have.get("ClientSecret"), settings)
    return False


def delete(obj: Object, settings: Settings) -> None:
    status = obj.status
    client_id, pool = status.get("clientId"), status.get("userPoolId")
    if not pool:
        return
    cognito = Cognito(settings)
    ids = [client_id] if client_id else []
    if not ids and status.get("creationStarted"):
        # A create cut short by a crash, before its id reached status: the name was free when
        # it was claimed, so a client of that name is this one's (as _create_or_adopt holds).
        ids = cognito.clients_named(pool, params(obj.spec)["ClientName"])
    if not ids:
        return
    if obj.spec.get("deletionPolicy") == "Retain":
        obj.event("Retained", f"deletionPolicy Retain: app client {', '.join(ids)} kept")
        return
    for found in ids:
        cognito.delete_client(pool, found)
        obj.event("Deleted", f"deleted app client {found}")
