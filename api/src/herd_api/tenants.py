"""Tenants as the API sees them: Tenant custom resources in the tenants namespace.

Idempotency and email uniqueness live in the cluster (herd_api.claims; labels on the Tenant
hold hashes of the Idempotency-Key and of the admin email), so the API keeps no state and
scales out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd_api.models import PHASES
from herd_core.constants import API_VERSION, FINALIZER, GROUP, VERSION

PLURAL = "tenants"
KEY_LABEL = f"{GROUP}/idempotency-key"
EMAIL_LABEL = f"{GROUP}/admin-email"
REQUEST_ANNOTATION = f"{GROUP}/request-hash"


def digest(value: str) -> str:
    """A label-safe (63 chars max) fingerprint; never the raw email or key."""
    return hashlib.sha256(value.encode()).hexdigest()[:40]


class TenantStore:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.api = client.CustomObjectsApi()

    def get(self, slug: str) -> dict[str, Any] | None:
        try:
            obj = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, slug
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def request_of(self, obj: dict[str, Any]) -> str | None:
        """The hash of the signup that created `obj` (None: not made by a signup)."""
        return (obj["metadata"].get("annotations") or {}).get(REQUEST_ANNOTATION)

    def create(self, spec: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        body = tenant_body(spec, idempotency_key)
        obj = self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        return cast(dict[str, Any], obj)

    def events(self, slug: str, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent Events about Tenant `slug` (type, reason, message, count, lastSeen)."""
        found = client.CoreV1Api().list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.kind=Tenant,involvedObject.name={slug}",
        )
        out: list[dict[str, Any]] = []
        for e in found.items:
            when = e.last_timestamp or e.event_time or e.first_timestamp
            out.append(
                {
                    "type": e.type or "",
                    "reason": e.reason or "",
                    "message": e.message or "",
                    "count": e.count or 1,
                    "lastSeen": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
                }
            )
        out.sort(key=lambda e: str(e["lastSeen"] or ""), reverse=True)
        return out[:limit]

    def list(
        self, limit: int, continue_: str | None, phase: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, filtered by the API server (the CRD's selectable field status.phase);
        the continue token carries the filter on, as Kubernetes lists do."""
        kwargs: dict[str, Any] = {"limit": limit}
        if continue_:
            kwargs["_continue"] = continue_
        if phase:
            kwargs["field_selector"] = phase_selector(phase)
        found: dict[str, Any] = self.api.list_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )
        return list(found["items"]), found["metadata"].get("continue") or None

    def delete(self, slug: str) -> bool:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, slug)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def reachable(self) -> bool:
        try:
            self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, limit=1)
        except Exception:
            return False
        return True


def phase_selector(phase: str) -> str:
    """The field selector of a phase. A Tenant the operator has not touched has no phase
    (it selects as ""): Pending means "none of the others"."""
    if phase == "Pending":
        return ",".join(f"status.phase!={p}" for p in PHASES if p != "Pending")
    return f"status.phase={phase}"


def tenant_body(spec: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """The Tenant a signup creates: labels hold digests of its admin email and key."""
    labels = {EMAIL_LABEL: digest(spec["adminEmail"].lower())}
    annotations = {REQUEST_ANNOTATION: request_hash(spec)}
    if idempotency_key:
        labels[KEY_LABEL] = digest(idempotency_key)
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {
            "name": spec["slug"],
            "labels": labels,
            "annotations": annotations,
            # The operator's finalizer from the start: it then starts on the Tenant at once,
            # without a write of its own to add it (one request and one event fewer).
            "finalizers": [FINALIZER],
        },
        "spec": spec,
    }


def request_hash(spec: dict[str, Any]) -> str:
    return digest(json.dumps(spec, sort_keys=True))
