"""Thin helpers over the Kubernetes client: config loading, status patches, Secrets."""

from __future__ import annotations

import base64
import threading
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, VERSION
from herd_core.settings import Settings, get_settings


def load_config(settings: Settings | None = None) -> None:
    """In-cluster credentials when present, else the kubeconfig (KUBECONFIG)."""
    global _shared
    s = settings or get_settings()
    with _shared_lock:
        _shared = None  # built again from the configuration loaded here
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(s.kubeconfig) if s.kubeconfig else None
        )


_shared: client.ApiClient | None = None
_shared_lock = threading.Lock()
POOL_SIZE = 64  # connections kept open: at least the operator's handler threads


def api_client() -> client.ApiClient:
    """One ApiClient (one pool of kept-alive connections) for the whole process.

    A client per call opens a new TLS connection per call: under a burst of Tenants the
    handshakes were the operator's largest CPU cost (py-spy, bench/tenants.py)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = POOL_SIZE
            _shared = client.ApiClient(configuration)
        return _shared


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def patch_status(
    plural: str,
    namespace: str,
    name: str,
    status: dict[str, Any],
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patch status at once (not at handler end): ids must survive a crash right after.

    With `resource_version` the write happens only if nobody wrote the object since (else
    ApiException 409): for a list replaced whole, such as conditions, read from that version.
    Returns the object as written."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    from herd_core.constants import FIELD_MANAGER

    written = custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, body, field_manager=FIELD_MANAGER
    )
    return cast(dict[str, Any], written)


def post_event(body: Any, reason: str, message: str, warning: bool = False) -> None:
    """An Event about a custom object, as Kopf posts them (for code outside Kopf's handlers,
    where its posting queue is not at hand)."""
    import datetime as dt

    from herd_core.constants import FIELD_MANAGER

    meta = body["metadata"]
    now = dt.datetime.now(dt.UTC)
    core().create_namespaced_event(
        meta["namespace"],
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}."),
            involved_object=client.V1ObjectReference(
                api_version=body.get("apiVersion"),
                kind=body.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER,
        ),
    )


def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj = custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return cast(dict[str, Any], obj)


def apply_secret(
    namespace: str,
    name: str,
    data: dict[str, str],
    labels: dict[str, str],
    owner: dict[str, Any],
    previous_owner: str | None = None,
) -> None:
    """Create the Secret, or bring its data, labels and owner back, without reading it: the
    operator may write Secrets, not read them.

    `previous_owner` (a uid): a Secret that object owns is handed to `owner` with the new
    data in the same patch, so it is never missing nor half written (a Tenant's Secret moving
    from its own CognitoClient to the shared app client).

    A Secret that exists and is not `owner`'s is someone else's: SecretConflict, and nothing
    is written (replacing it would drop its keys and hand it to our owner's garbage
    collection). Ownership is asked by the JSON patch itself: its first operation tests the
    owner, so the API server refuses the whole patch (422) for anyone else's Secret.
    """
    from herd_core.errors import SecretConflict

    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "data": encoded,
    }
    api = core()
    try:
        api.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]
        return
    except ApiException as err:
        if err.status != 409:
            raise
    rest: list[dict[str, Any]] = [
        {"op": "add", "path": "/metadata/ownerReferences", "value": [owner]},
        {"op": "add", "path": "/metadata/labels", "value": labels},
        {"op": "add", "path": "/data", "value": encoded},
    ]
    # Ours already first (a handover done by an earlier pass), then the previous owner's.
    for uid in [owner["uid"], *([previous_owner] if previous_owner else [])]:
        try:
            api.patch_namespaced_secret(name, namespace, [_owner_test(uid), *rest])
            return
        except ApiException as err:
            if err.status != 422:
                raise
    raise SecretConflict(
        f"Secret {name} already exists and is not this {owner['kind']}'s; it is left "
        "untouched: choose another secretName or delete that Secret"
    )


def _owner_test(uid: str) -> dict[str, str]:
    """A JSON-patch operation that fails unless `uid` is the object's (first) owner."""
    return {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": uid}


def secret_owned_by(namespace: str, name: str, uid: str) -> bool | None:
    """None when the Secret does not exist; else whether `uid` owns it. Asked by a patch that
    only tests, so it needs no read permission, writes nothing and returns no foreign data."""
    try:
        core().patch_namespaced_secret(name, namespace, [_owner_test(uid)])
    except ApiException as err:
        if err.status == 404:
            return None
        if err.status == 422:
            return False
        raise
    return True


def holders(plural: str, field: str, value: str) -> list[tuple[str, str]]:
    """(namespace, name) of every object of `plural` whose status.<field> is `value`."""
    found: dict[str, Any] = custom().list_cluster_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, plural
    )
    return [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in found["items"]
        if (o.get("status") or {}).get(field) == value
    ]
