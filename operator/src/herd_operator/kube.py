"""Thin helpers over the Kubernetes client: config loading, status patches, Secrets."""

from __future__ import annotations

import base64
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from herd_operator.constants import FIELD_MANAGER, GROUP, VERSION
from herd_operator.settings import Settings, get_settings


def load_config(settings: Settings | None = None) -> None:
    """In-cluster credentials when present, else the kubeconfig (KUBECONFIG)."""
    s = settings or get_settings()
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(s.kubeconfig) if s.kubeconfig else None
        )


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def core() -> client.CoreV1Api:
    return client.CoreV1Api()


def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Merge-patch status at once (not at handler end): ids must survive a crash right after."""
    custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": status}
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
) -> None:
    """Create the Secret or bring its data and owner back: one server-side apply, without
    reading it first (the operator may write Secrets, not read them). A no-op apply writes
    nothing."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    core().patch_namespaced_secret(
        name,
        namespace,
        body,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def update_conditions(
    plural: str,
    namespace: str,
    name: str,
    updates: list[tuple[str, bool | None, str, str]],
    attempts: int = 8,
) -> None:
    """Set conditions by read-modify-write under the object's resourceVersion.

    Merge patches replace lists whole, and the operator and the worker both write a Tenant's
    conditions: a stale read would drop the other's. A patch that carries resourceVersion
    fails with 409 when the object moved on; then read again.
    """
    from herd_operator import conditions as cond

    for _ in range(attempts):
        obj = get_object(plural, namespace, name)
        if obj is None:
            return
        conditions = (obj.get("status") or {}).get("conditions")
        generation = obj["metadata"].get("generation")
        for type_, status, reason, message in updates:
            conditions = cond.set_condition(conditions, type_, status, reason, message, generation)
        try:
            custom().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {
                    "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    "status": {"conditions": conditions},
                },
            )
            return
        except ApiException as err:
            if err.status == 404:
                return
            if err.status != 409:
                raise
    raise RuntimeError(f"{plural}/{name}: conditions kept changing under us")
