"""A Tenant's steps: a customer signup, provisioned step by step.

1. a Cognito user for the admin email (custom:tenant = slug; invitation suppressed),
2. its app client: the environment's shared client (`herd-tenants`), its id in the Tenant's
   Secret; a child CognitoClient of its own (owned by the Tenant, so garbage-collected with
   it) only when spec.callbackURLs asks for one, or no shared client is configured. A pool
   holds 1,000 app clients (10,000 at most): one per Tenant would cap the tenants
   (docs/tenant-model.md),
3. an OpenRemote realm and its admin user (when provisioning is enabled),
4. one welcome email job on the queue (idempotency key from the Tenant's uid),
5. the realm's logo, once the thumbnail worker has put one in `status.logo` (it wakes the
   Tenant through an annotation: status changes do not run handlers).

Each step checks what exists before acting and records its result in status the moment it
exists, so a restart resumes where the last run stopped and never repeats a side effect: a
re-enqueued email job carries the same key and the worker sends it once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from herd_core import aws, emailjobs, kube, sandbox
from herd_core import conditions as cond
from herd_core.constants import (
    API_VERSION,
    FINALIZER,
    GROUP,
    RESEND_WELCOME_ANNOTATION,
    WELCOME_EMAIL_SENT,
)
from herd_core.errors import (
    AlreadyExists,
    InvalidSpec,
    Pending,
    Recoverable,
    SecretConflict,
    Waiting,
)
from herd_operator.clients.cognito import Cognito, issuer_url
from herd_operator.clients.openremote import OpenRemote
from herd_operator.handlers import cognitoclient, sestemplate
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings

KIND = "Tenant"
PLURAL = "tenants"
USER, CLIENT, REALM, EMAIL = "CognitoUser", "AppClient", "Realm", "WelcomeEmailQueued"
STEPS = (USER, CLIENT, REALM, EMAIL)
SHARED = "Shared"  # the AppClient step's reason on the shared client
# How the AppClient step's message begins on the shared client. A Tenant that has a child
# says so first while its move fails ("CognitoClient <slug>-app kept: shared client ..."),
# so the step always tells whether a child may be behind it.
SHARED_STEP = "shared client "
TENANT_LABEL = f"{GROUP}/tenant"  # on a Tenant's children


class ChildPending(Pending):
    """The Tenant waits for its CognitoClient. `step` is the child's state as the Tenant has
    just recorded it; `created` when this very pass created the child, so its first state is
    on its way (any other child may be retrying on its own backoff, for minutes)."""

    def __init__(self, message: str, step: tuple[str, ...], created: bool) -> None:
        super().__init__(message)
        self.step = step
        self.created = created


def child_client_name(slug: str) -> str:
    return f"{slug}-app"


def client_secret_name(slug: str) -> str:
    return f"{slug}-cognito"


def child_client(obj: Object) -> dict[str, Any]:
    """The tenant's app client: a public (SPA) client, code flow when callbacks are given."""
    spec = obj.spec
    child: dict[str, Any] = {
        "clientName": f"tenant-{spec['slug']}",
        "generateSecret": False,
        "explicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        "secretName": client_secret_name(spec["slug"]),
        # A retained Tenant keeps its app client too.
        "deletionPolicy": spec.get("deletionPolicy", "Delete"),
    }
    if spec.get("callbackURLs"):
        child.update(
            allowedOAuthFlows=["code"],
            allowedOAuthScopes=["openid", "email"],
            callbackURLs=spec["callbackURLs"],
        )
    return {
        "apiVersion": API_VERSION,
        "kind": cognitoclient.KIND,
        "metadata": {
            "name": child_client_name(spec["slug"]),
            "namespace": obj.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "herd-operator",
                TENANT_LABEL: spec["slug"],
            },
            "ownerReferences": [obj.owner_reference()],
            # Ours from the start: the operator need not add it in a write of its own.
            "finalizers": [FINALIZER],
        },
        "spec": child,
    }


def reconcile(obj: Object, settings: Settings) -> str:
    spec = obj.spec
    if obj.namespace != settings.tenants_namespace:
        raise InvalidSpec(f"Tenants live in namespace {settings.tenants_namespace}")
    if not settings.cognito_user_pool_id:
        raise InvalidSpec("the operator has no platform user pool (HERD_COGNITO_USER_POOL_ID)")
    # Status is gathered by common.reconcile and written with the outcome, or before the
    # next AWS side effect (the realm's step). The user's step goes out with the child's:
    # creating the child is a Kubernetes write whose name is its identity (a create twice
    # answers 409), and a user created just before a crash is recognised as ours by its
    # custom:tenant. The email step's goes out with Ready: a crash between them queues the
    # job again under the same key, and the worker sends once.
    if obj.status.get("phase") in (None, "Pending", "Failed"):
        obj.patch_status(phase="Provisioning")
    ensure_user(obj, settings)
    ensure_client(obj, settings)
    if settings.openremote_enabled:
        with obj.step():
            ensure_realm(obj, settings)
    else:
        ensure_realm(obj, settings)  # a condition only
    ensure_welcome_email(obj, settings)
    ensure_realm_logo(obj, settings)
    obj.patch_status(phase="Ready", loginURL=login_url(spec["slug"], settings))
    return f"tenant {spec['slug']} is provisioned"


def login_url(slug: str, settings: Settings) -> str:
    return settings.login_url_template.format(slug=slug)


def _step(obj: Object, step: str, ok: bool | None, reason: str, message: str) -> None:
    obj.set_conditions((step, ok, reason, message))


def ensure_user(obj: Object, settings: Settings) -> None:
    spec, status = obj.spec, obj.status
    pool, email = str(settings.cognito_user_pool_id), spec["adminEmail"]
    if (
        status.get("cognitoUsername") == email
        and status.get("adminSub")
        and cond.is_true(status.get("conditions"), USER)
    ):
        return  # recorded as ours: no AWS call
    cognito = Cognito(settings)
    # Create first (one call when the user is new); an existing user is ours only if it
    # carries this tenant (a create answered just before a crash), else another's.
    sub = cognito.create_user_if_absent(
        pool, email, {"email": email, "email_verified": "true", "custom:tenant": spec["slug"]}
    )
    if sub is not None:
        obj.event("CognitoUserCreated", f"created Cognito user for the admin of {spec['slug']}")
    else:
        user = cognito.get_user(pool, email)
        if user is None:
            raise Recoverable(f"the Cognito user of {spec['slug']}'s admin is not visible yet")
        attrs = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
        if status.get("cognitoUsername") != email and attrs.get("custom:tenant") != spec["slug"]:
            raise AlreadyExists(
                f"the admin email is already the Cognito user of another "
                f"tenant ({attrs.get('custom:tenant') or 'none'})"
            )
        sub = attrs.get("sub")
    if not sub:
        raise Recoverable(f"the Cognito user of {spec['slug']}'s admin has no sub")
    # Who the API lets act as this tenant's admin: the user's sub, recorded where only the
    # operator writes. Never custom:tenant, which a user may be able to write on themselves.
    obj.patch_status(cognitoUsername=email, adminSub=sub)
    _step(obj, USER, True, "Created", "Cognito user exists; invitation suppressed")


def client_step(condition: Mapping[str, Any], of_tenant: bool = False) -> tuple[str, ...]:
    """The state of the AppClient step: from the child's Ready condition, or as the Tenant
    recorded it (ensure_client copies the child's reason while it is not Ready)."""
    if condition.get("status") == "True":
        return ("True",)
    if of_tenant and not condition:
        return ("Unknown",)
    return ("False", str(condition.get("reason") or "Creating"))


def _create_child(obj: Object, body: dict[str, Any]) -> dict[str, Any] | None:
    """The child as created; None when one of that name exists already."""
    group, version = body["apiVersion"].split("/")
    try:
        created = kube.custom().create_namespaced_custom_object(
            group, version, obj.namespace, cognitoclient.PLURAL, body
        )
    except ApiException as err:
        if err.status != 409:
            raise
        return None
    obj.event("AppClientCreated", f"created CognitoClient {body['metadata']['name']}")
    return cast(dict[str, Any], created)


def _check_ours(obj: Object, child: Mapping[str, Any]) -> None:
    """A CognitoClient of the child's name that this Tenant does not control (its controller
    owner reference names this Tenant's uid) is never patched: its spec names its own app
    client and Secret, and writing ours over them would move that Secret and take its client
    over. One an earlier Tenant of this name controlled goes with it (garbage collection):
    that is waited for."""
    name = child["metadata"]["name"]
    refs = [r for r in child["metadata"].get("ownerReferences") or [] if r.get("controller")]
    if any(r.get("uid") == obj.uid for r in refs):
        return
    if any(r.get("kind") == KIND and r.get("name") == obj.name for r in refs):
        message = f"CognitoClient {name} of an earlier Tenant {obj.name} is being deleted"
        _step(obj, CLIENT, False, "Waiting", message)
        raise Waiting(message)
    message = (
        f"CognitoClient {name} already exists and is not this Tenant's (no controller "
        "reference to it); it is left untouched: delete or rename it"
    )
    _step(obj, CLIENT, False, cond.ALREADY_EXISTS, message)
    raise AlreadyExists(message)


def uses_shared_client(
    spec: Mapping[str, Any], status: Mapping[str, Any], settings: Settings
) -> bool:
    """Whether this Tenant signs in through the environment's shared app client: one is
    configured and the Tenant needs no callback URLs of its own. A Tenant that has a child
    already keeps it while migration is off."""
    if not settings.cognito_shared_client_id or spec.get("callbackURLs"):
        return False
    return settings.migrate_tenant_clients or not _had_child(status)


def _had_child(status: Mapping[str, Any]) -> bool:
    """Whether this Tenant made (or began to make) a CognitoClient of its own: its AppClient
    step was taken other than on the shared client. A new Tenant has none: no read."""
    step = cond.get(status.get("conditions"), CLIENT)
    return step is not None and not str(step.get("message") or "").startswith(SHARED_STEP)


def needs_migration(body: Mapping[str, Any], settings: Settings) -> bool:
    """A Tenant that should be on the shared client and still has a child of its own."""
    status = body.get("status") or {}
    return uses_shared_client(body.get("spec") or {}, status, settings) and _had_child(status)


def ensure_client(obj: Object, settings: Settings) -> None:
    if uses_shared_client(obj.spec, obj.status, settings):
        ensure_shared_client(obj, settings)
    else:
        ensure_own_client(obj)


def ensure_shared_client(obj: Object, settings: Settings) -> None:
    """The Tenant's Secret names the shared client; no app client is made for it (its
    tenant is what the Tenant records: status.adminSub, which no user can write). A child
    this Tenant made before hands the Secret over in one patch (never missing), then goes."""
    slug, status = obj.spec["slug"], obj.status
    client_id, pool = str(settings.cognito_shared_client_id), str(settings.cognito_user_pool_id)
    secret = client_secret_name(slug)
    if (
        status.get("clientId") == client_id
        and status.get("clientSecretName") == secret
        and not _had_child(status)
        and cond.is_true(status.get("conditions"), CLIENT)
    ):
        return  # recorded: no write
    shared = f"{SHARED_STEP}{settings.cognito_shared_client_name}"
    had = _had_child(status)

    def failed(reason: str, text: str) -> None:
        kept = f"CognitoClient {child_client_name(slug)} kept: " if had else ""
        _step(obj, CLIENT, False, reason, f"{kept}{shared}: {text}")

    _check_shared_client(settings, failed)
    child = None
    if had:
        child = kube.get_object(cognitoclient.PLURAL, obj.namespace, child_client_name(slug))
        if child is not None and not _controls(obj, child):
            child = None  # never ours to touch (N11); the Secret write below says if it clashes
    data = {
        "clientId": client_id,
        "userPoolId": pool,
        "issuerURL": issuer_url(settings.aws_region, pool),
    }
    labels = {"app.kubernetes.io/managed-by": "herd-operator", TENANT_LABEL: slug}
    try:
        kube.apply_secret(
            obj.namespace,
            secret,
            data,
            labels,
            obj.owner_reference(),
            previous_owner=None if child is None else child["metadata"]["uid"],
        )
    except SecretConflict as err:
        failed(err.reason, str(err))
        raise
    if child is not None:
        # Only now: the Secret already names the shared client. Its own app client goes by
        # the child's finalizer (kept if its deletionPolicy says Retain).
        name = child["metadata"]["name"]
        try:
            kube.custom().delete_namespaced_custom_object(
                GROUP, child["apiVersion"].split("/")[1], obj.namespace, cognitoclient.PLURAL, name
            )
        except ApiException as err:
            if err.status != 404:
                raise
        obj.event(
            "AppClientMigrated",
            f"moved to shared client {settings.cognito_shared_client_name}; "
            f"deleted CognitoClient {name}",
        )
    obj.patch_status(clientSecretName=secret, clientId=client_id)
    _step(obj, CLIENT, True, SHARED, f"{shared}; credentials in Secret {secret}")


# The shared clients this process has found in their pools, by (pool, id): one
# DescribeUserPoolClient per operator process, not per Tenant.
_shared_found: set[tuple[str, str]] = set()


def _check_shared_client(settings: Settings, failed: Callable[[str, str], None]) -> None:
    """The configured shared client exists in the pool under its name, before any Secret
    names it: a wrong id (a placeholder left in the values) would otherwise hand every Tenant
    a client that signs no one in, and move Tenants off working clients of their own."""
    pool, client_id = str(settings.cognito_user_pool_id), str(settings.cognito_shared_client_id)
    if (pool, client_id) in _shared_found:
        return
    found = Cognito(settings).describe_client(pool, client_id)
    if found is None or found.get("ClientName") != settings.cognito_shared_client_name:
        message = (
            f"app client {client_id} (HERD_COGNITO_SHARED_CLIENT_ID) is not "
            f"{settings.cognito_shared_client_name} of pool {pool}"
        )
        failed("SharedClientMissing", message)
        raise Recoverable(message)
    _shared_found.add((pool, client_id))


def _controls(obj: Object, child: Mapping[str, Any]) -> bool:
    refs = child["metadata"].get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == obj.uid for r in refs)


def ensure_own_client(obj: Object) -> None:
    body = child_client(obj)
    name = body["metadata"]["name"]
    # First pass: create, and the answer is the child (no read). Later: read it.
    first = cond.get(obj.status.get("conditions"), CLIENT) is None
    current = _create_child(obj, body) if first else None
    created = current is not None
    if current is None:
        current = kube.get_object(cognitoclient.PLURAL, obj.namespace, name)
        if current is None:
            current = _create_child(obj, body)
            created = current is not None
            current = current or kube.get_object(cognitoclient.PLURAL, obj.namespace, name)
        if current is not None and not created:
            _check_ours(obj, current)
        if current is not None and current.get("spec", {}) != {
            **current.get("spec", {}),
            **body["spec"],
        }:
            group, version = body["apiVersion"].split("/")
            kube.custom().patch_namespaced_custom_object(
                group, version, obj.namespace, cognitoclient.PLURAL, name, {"spec": body["spec"]}
            )
    conditions = (current or {}).get("status", {}).get("conditions")
    ready = cond.get(conditions, cond.READY)
    if not cond.is_true(conditions, cond.READY):
        reason = (ready or {}).get("reason", "Creating")
        message = (ready or {}).get("message", "waiting for the app client")
        _step(obj, CLIENT, False, reason, f"CognitoClient {name}: {message}")
        if reason in cond.TERMINAL:
            raise InvalidSpec(f"CognitoClient {name}: {message}")
        # No poll: the child's change wakes this Tenant (waits: in place; wakes: by annotation).
        raise ChildPending(
            f"waiting for CognitoClient {name}",
            client_step(ready or {}),
            created=created and ready is None,
        )
    client_id = (current or {}).get("status", {}).get("clientId")
    if (
        obj.status.get("clientSecretName") != body["spec"]["secretName"]
        or obj.status.get("clientId") != client_id
        or not cond.is_true(obj.status.get("conditions"), CLIENT)
    ):
        obj.patch_status(clientSecretName=body["spec"]["secretName"], clientId=client_id)
        secret = body["spec"]["secretName"]
        _step(obj, CLIENT, True, "Ready", f"CognitoClient {name}; credentials in Secret {secret}")


def ensure_realm(obj: Object, settings: Settings) -> None:
    spec, status = obj.spec, obj.status
    if not settings.openremote_enabled:
        if cond.get(status.get("conditions"), REALM) is None:
            _step(obj, REALM, True, "Disabled", "OpenRemote provisioning is off")
        return
    realm = spec["slug"]
    if status.get("realmAdminId") and cond.is_true(status.get("conditions"), REALM):
        return
    openremote = OpenRemote(settings)
    if status.get("realm") != realm:
        if openremote.realm_exists(realm):
            raise AlreadyExists(f"OpenRemote realm {realm} already exists")
        obj.patch_status(realm=realm)  # claim before creating: a restart knows it is ours
        obj.flush()
    openremote.create_realm(realm, spec["displayName"])
    user_id = status.get("realmAdminId") or openremote.create_user(
        realm, "admin", spec["adminEmail"]
    )
    obj.patch_status(realmAdminId=user_id)
    obj.flush()  # the moment it exists
    openremote.set_roles(realm, user_id, settings.openremote_admin_roles)
    obj.event("RealmProvisioned", f"OpenRemote realm {realm} with its admin user")
    _step(obj, REALM, True, "Created", f"OpenRemote realm {realm} and admin user")


def logo_to_apply(status: Mapping[str, Any], settings: Settings) -> str | None:
    """The 256 px logo the realm should show and does not yet, if any."""
    url = str((status.get("logo") or {}).get("url256") or "")
    if not settings.openremote_enabled or not url or status.get("realmLogoURL") == url:
        return None
    if not status.get("realm") or not cond.is_true(status.get("conditions"), REALM):
        return None
    return url


def ensure_realm_logo(obj: Object, settings: Settings) -> None:
    url = logo_to_apply(obj.status, settings)
    if url is None:
        return
    OpenRemote(settings).set_realm_logo(obj.status["realm"], url)
    obj.patch_status(realmLogoURL=url)
    obj.event("RealmLogoSet", f"OpenRemote realm {obj.status['realm']} shows the new logo")


def welcome_template(obj: Object, settings: Settings) -> str:
    """The SES name of the welcome SESTemplate, once it is Ready."""
    name = obj.spec.get("welcomeTemplate") or settings.welcome_template
    found = sestemplate.ready_name(obj.namespace, name)
    if found is None:
        _step(obj, EMAIL, False, "TemplateNotReady", f"SESTemplate {name} is missing or not Ready")
        raise Waiting(f"waiting for SESTemplate {name}")
    return found


def resend_of(obj: Object) -> str | None:
    """The RESEND_WELCOME_ANNOTATION value to queue the welcome email again for: set, not
    yet acted on, and SES refused the email in its sandbox (herd_core.sandbox). One
    re-queue per value, so a reconcile that finds it acted on queues nothing."""
    wanted = (obj.body["metadata"].get("annotations") or {}).get(RESEND_WELCOME_ANNOTATION)
    refused = cond.get(obj.status.get("conditions"), WELCOME_EMAIL_SENT) or {}
    done = (obj.status.get("welcomeEmail") or {}).get("resendOf")
    if wanted is None or str(wanted)[:253] == done or refused.get("reason") != sandbox.REASON:
        return None
    return str(wanted)[:253]  # the status field's bound; a value is rarely that long


def ensure_welcome_email(obj: Object, settings: Settings) -> None:
    resend = resend_of(obj)
    if (obj.status.get("welcomeEmail") or {}).get("queuedAt") and resend is None:
        return
    if not settings.email_queue_url:
        raise InvalidSpec("the operator has no email queue (HERD_EMAIL_QUEUE_URL)")
    spec = obj.spec
    job = emailjobs.EmailJob(
        idempotency_key=f"welcome-{obj.uid}",
        template=welcome_template(obj, settings),
        to=spec["adminEmail"],
        data={
            "displayName": spec["displayName"],
            "slug": spec["slug"],
            "plan": spec["plan"],
            "loginURL": login_url(spec["slug"], settings),
        },
        report=emailjobs.Report(namespace=obj.namespace, name=obj.name, uid=obj.uid),
    )
    emailjobs.enqueue(aws.shared("sqs", settings), settings.email_queue_url, job)
    # A crash right here re-enqueues on restart: same key, so the worker sends once (a
    # refused job's claim was released, so its resend is that once).
    # (Merge patch: the worker's sentAt/messageId beside queuedAt are kept.)
    if resend is None:
        obj.patch_status(welcomeEmail={"queuedAt": cond.now()})
        _step(obj, EMAIL, True, "Queued", "welcome email queued")
        obj.event("WelcomeEmailQueued", "welcome email queued")
        return
    obj.patch_status(welcomeEmail={"queuedAt": cond.now(), "resendOf": resend})
    _step(obj, EMAIL, True, "Queued", "welcome email queued again (refused in the SES sandbox)")
    obj.event("WelcomeEmailQueued", "welcome email queued again after the SES sandbox refused it")


def delete(obj: Object, settings: Settings) -> None:
    spec, status = obj.spec, obj.status
    obj.patch_status(phase="Deleting")
    if spec.get("deletionPolicy") == "Retain":
        obj.event("Retained", "deletionPolicy Retain: Cognito user and realm kept")
        return
    if status.get("cognitoUsername") and settings.cognito_user_pool_id:
        Cognito(settings).delete_user(settings.cognito_user_pool_id, status["cognitoUsername"])
        obj.event("CognitoUserDeleted", "deleted the admin's Cognito user")
    if status.get("realm") and settings.openremote_enabled:
        OpenRemote(settings).delete_realm(status["realm"])
        obj.event("RealmDeleted", f"deleted OpenRemote realm {status['realm']}")
