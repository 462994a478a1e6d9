"""CognitoClient: a Cognito app client whose id (and secret) live in a Kubernetes Secret.

The client secret is read from Cognito and written only into the Secret: never into spec,
status, events or logs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.exceptions import ClientError
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
# Status fields of a create's claim, cleared together once the create's outcome is known.
CLAIM_FIELDS = ("creationStarted", "claimedName", "claimedNameFree")
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
    # Save one our controller owns: a Tenant's Secret of the shared app client, which its
    # own new client (spec.callbackURLs given) takes over in one patch, never missing.
    previous = None
    if kube.secret_owned_by(obj.namespace, spec["secretName"], obj.uid) is False:
        previous = _controller_uid(obj)
        if previous is None or not kube.secret_owned_by(
            obj.namespace, spec["secretName"], previous
        ):
            raise SecretConflict(
                f"Secret {spec['secretName']} already exists and is not this CognitoClient's;"
                " it is left untouched: choose another secretName or delete that Secret"
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
    write_secret(obj, pool, client_id, have.get("ClientSecret"), settings, previous)
    return f"app client {client_id} is in sync; credentials in Secret {spec['secretName']}"


def _create_or_adopt(
    obj: Object, cognito: Cognito, pool: str, want: dict[str, Any], settings: Settings
) -> tuple[str, dict[str, Any] | None]:
    """The client's id, and the client itself when this call created it."""
    spec, status = obj.spec, obj.status
    if status.get("creationStarted"):
        # A create of ours was under way when the last run ended (a crash, or an answer lost
        # on the way): the client it made, if it landed, is ours; never another of the pool.
        found = claimed_clients(obj, cognito, pool)
        if len(found) > 1:
            raise AlreadyExists(
                f"{len(found)} app clients named {claimed_name(obj)} were made in {pool} "
                "since this CognitoClient claimed the name; cannot tell which is its own"
            )
        if found:
            obj.event(
                "Created",
                f"found app client {found[0]}, created before a restart; credentials go to "
                f"Secret {spec['secretName']}",
            )
            obj.patch_status(clientId=found[0], userPoolId=pool, **dict.fromkeys(CLAIM_FIELDS))
            return found[0], None
        # It never landed: the claim goes, and the client's name is looked at afresh (the
        # spec may name another by now; a client of that name goes through adoption).
        obj.patch_status(**dict.fromkeys(CLAIM_FIELDS))
    # Cognito finds clients by name only through a list of the whole pool. A Tenant's own
    # client (named for its Tenant, whose name is unique) is created without one: under a
    # burst of Tenants, a list per create of a pool that grows with each one was quadratic.
    tenant_child = any(
        o.get("kind") == "Tenant" and o.get("controller")
        for o in obj.body["metadata"].get("ownerReferences") or []
    )
    existing = [] if tenant_child else cognito.clients_named(pool, want["ClientName"])
    if existing:
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
        obj.patch_status(clientId=client_id, userPoolId=pool)
        return client_id, None
    # The claim, before the create: a restart knows a create may have landed, under which
    # name, and whether that name was free (listed and found free; a Tenant's child: unknown).
    obj.patch_status(
        # To the millisecond: a client made before the claim is told from one made after it.
        creationStarted=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        claimedName=want["ClientName"],
        claimedNameFree=None if tenant_child else True,
        userPoolId=pool,
    )
    obj.flush()
    try:
        created = cognito.create_client(pool, want, bool(spec.get("generateSecret")))
    except ClientError as err:
        if 400 <= _http_status(err) < 500:
            # Cognito refused it: no client was made, so there is nothing to resume. A claim
            # left standing would let a later rename take the pool's client of that name.
            obj.patch_status(**dict.fromkeys(CLAIM_FIELDS))
        raise
    client_id = str(created["ClientId"])
    # The id goes to status with the outcome, one write later, not in a write of its own:
    # until then the claim stands, and a restart finds the client by the claimed name.
    obj.event(
        "Created",
        f"created app client {client_id} in {pool}; credentials go to Secret {spec['secretName']}",
    )
    obj.patch_status(clientId=client_id, userPoolId=pool, **dict.fromkeys(CLAIM_FIELDS))
    return client_id, created


def _http_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def claimed_name(obj: Object) -> str:
    # A claim written before claimedName was (an older operator's): its name is the spec's,
    # and whether it was free is unknown.
    return str(obj.status.get("claimedName") or params(obj.spec)["ClientName"])


def claimed_clients(obj: Object, cognito: Cognito, pool: str) -> list[str]:
    """The clients a create under this object's claim may have made: of exactly the claimed
    name, held by no other CognitoClient, and (unless the name was free when claimed) made
    since the claim. One is this object's own; none, the create never landed."""
    status = obj.status
    name = claimed_name(obj)
    found = [
        c
        for c in cognito.clients_named(pool, name)
        if not [h for h in kube.holders(PLURAL, "clientId", c) if h != (obj.namespace, obj.name)]
    ]
    if status.get("claimedName") and status.get("claimedNameFree"):
        return found
    # The create went out only after the claim was written to the API server: a client it
    # made is later than the claim by that round trip at least (Cognito's and the operator's
    # clocks are NTP-synchronised well within it). One made before was another's.
    since = dt.datetime.fromisoformat(str(status["creationStarted"]).replace("Z", "+00:00"))
    made = [(c, (cognito.describe_client(pool, c) or {}).get("CreationDate")) for c in found]
    return [c for c, when in made if isinstance(when, dt.datetime) and when >= since]


def _controller_uid(obj: Object) -> str | None:
    """The uid of the Tenant that controls this CognitoClient, if a Tenant does: the one
    owner whose Secret it may take over (a Tenant's, moving off the shared client)."""
    refs = obj.body["metadata"].get("ownerReferences") or []
    return next(
        (str(r["uid"]) for r in refs if r.get("controller") and r.get("kind") == "Tenant"), None
    )


def write_secret(
    obj: Object,
    pool: str,
    client_id: str,
    secret: str | None,
    settings: Settings,
    previous_owner: str | None = None,
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
    kube.apply_secret(
        obj.namespace, spec["secretName"], data, labels, obj.owner_reference(), previous_owner
    )
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
        # A create cut short by a crash, before its id reached status: the client it made
        # under its claim, as _create_or_adopt would resume it; never another of the pool.
        ids = claimed_clients(obj, cognito, pool)
        if len(ids) > 1:
            obj.event(
                "Retained",
                f"{len(ids)} app clients named {claimed_name(obj)} were made since the claim; "
                "cannot tell which was this one's, so none is deleted",
                warning=True,
            )
            return
    if not ids:
        return
    if obj.spec.get("deletionPolicy") == "Retain":
        obj.event("Retained", f"deletionPolicy Retain: app client {', '.join(ids)} kept")
        return
    for found in ids:
        cognito.delete_client(pool, found)
        obj.event("Deleted", f"deleted app client {found}")
