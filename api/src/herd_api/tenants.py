"""Tenants as the API sees them: Tenant custom resources in the tenants namespace.

Idempotency and email uniqueness live in the cluster (herd_api.claims; labels on the Tenant
hold hashes of the Idempotency-Key and of the admin email), so the API keeps no state and
scales out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from herd_api.kubeapi import KubeApi
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
    """Tenants through the API's async client (herd_api.kubeapi), answers as plain dicts."""

    def __init__(self, namespace: str, kube: KubeApi) -> None:
        self.namespace = namespace
        self.kube = kube
        self.path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    async def get(self, slug: str) -> dict[str, Any] | None:
        return await self.kube.get(f"{self.path}/{slug}")

    def request_of(self, obj: dict[str, Any]) -> str | None:
        """The hash of the signup that created `obj` (None: not made by a signup)."""
        return (obj["metadata"].get("annotations") or {}).get(REQUEST_ANNOTATION)

    def made_by(self, obj: dict[str, Any], request: str, idempotency_key: str | None) -> bool:
        """Whether `obj` is this very signup's, asked again: the same request under the same
        Idempotency-Key. The request alone proves nothing: anyone who knows a tenant's slug,
        name and plan could try admin emails until one was answered as a replay."""
        if not idempotency_key or self.request_of(obj) != request:
            return False
        return (obj["metadata"].get("labels") or {}).get(KEY_LABEL) == digest(idempotency_key)

    async def create(self, spec: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        return await self.kube.create(self.path, tenant_body(spec, idempotency_key))

    async def events(self, slug: str, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent Events about Tenant `slug` (type, reason, message, count, lastSeen)."""
        found = await self.kube.call(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/events",
            query={"fieldSelector": f"involvedObject.kind=Tenant,involvedObject.name={slug}"},
        )
        out: list[dict[str, Any]] = []
        for e in found.get("items") or []:
            when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
            out.append(
                {
                    "type": e.get("type") or "",
                    "reason": e.get("reason") or "",
                    "message": e.get("message") or "",
                    "count": e.get("count") or 1,
                    # To the second, as Events' timestamps are (eventTime has microseconds).
                    "lastSeen": f"{when[:19]}Z" if when else None,
                }
            )
        out.sort(key=lambda e: str(e["lastSeen"] or ""), reverse=True)
        return out[:limit]

    async def list(
        self, limit: int, continue_: str | None, phase: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, filtered by the API server (the CRD's selectable field status.phase);
        the continue token carries the filter on, as Kubernetes lists do."""
        query = {"limit": str(limit)}
        if continue_:
            query["continue"] = continue_
        if phase:
            query["fieldSelector"] = phase_selector(phase)
        found = await self.kube.call("GET", self.path, query=query)
        return list(found.get("items") or []), (found.get("metadata") or {}).get("continue") or None

    async def delete(self, slug: str) -> bool:
        return await self.kube.delete(f"{self.path}/{slug}")

    async def reachable(self) -> bool:
        try:
            await self.kube.call("GET", self.path, query={"limit": "1"})
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
