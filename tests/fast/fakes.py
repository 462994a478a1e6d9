"""Fakes for the fast layer: AWS as moto in this process, and what the API server would
hold, in a dict."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta, V1OwnerReference
from kubernetes.client.exceptions import ApiException
from moto import mock_aws

from herd_api.claims import Claims
from herd_api.tenants import TenantStore, tenant_body
from herd_devkit.settings import Settings

REGION = "eu-west-1"


@contextmanager
def in_process_aws() -> Iterator[Settings]:
    """moto in this process, and Settings for it (no endpoint: mock_aws intercepts boto3)."""
    with pytest.MonkeyPatch.context() as patch:
        for var in (
            "AWS_ENDPOINT_URL",
            "HERD_AWS_ENDPOINT_URL",
            "AWS_PROFILE",
            "HERD_AWS_CALL_LOG",
        ):
            patch.delenv(var, raising=False)
        patch.setenv("AWS_REGION", REGION)
        with mock_aws():
            yield Settings(aws_region=REGION, aws_max_attempts=1, aws_endpoint_url=None)


class FakeTenantStore(TenantStore):
    """The TenantStore's contract on a dict: 409 on a taken name, label selection by
    digest, paging with continue tokens (a bad one: 410, as the API server answers)."""

    def __init__(self, namespace: str = "tenants") -> None:
        self.namespace = namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.up = True
        self._uids = itertools.count(1)

    def get(self, slug: str) -> dict[str, Any] | None:
        obj = self.objects.get(slug)
        return copy.deepcopy(obj) if obj else None

    def create(self, spec: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        if spec["slug"] in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        body = tenant_body(spec, idempotency_key)
        body["metadata"] |= {
            "namespace": self.namespace,
            "uid": f"uid-{next(self._uids)}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        }
        self.objects[spec["slug"]] = body
        return copy.deepcopy(body)

    def list(
        self, limit: int, continue_: str | None, phase: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        def phase_of(name: str) -> str:
            return (self.objects[name].get("status") or {}).get("phase") or "Pending"

        names = sorted(n for n in self.objects if phase is None or phase_of(n) == phase)
        try:
            start = int(continue_ or 0)
        except ValueError as err:
            raise ApiException(status=410, reason="Expired") from err
        page = names[start : start + limit]
        more = start + limit < len(names)
        return [copy.deepcopy(self.objects[n]) for n in page], str(start + limit) if more else None

    def delete(self, slug: str) -> bool:
        return self.objects.pop(slug, None) is not None

    def events(self, slug: str, limit: int = 20) -> list[dict[str, Any]]:
        return []

    def reachable(self) -> bool:
        return self.up


class FakeConfigMaps:
    """The ConfigMap calls signup claims make, with the API server's answers: 409 on a taken
    name or a stale resourceVersion, 404 on a missing one."""

    def __init__(self) -> None:
        self.items: dict[str, V1ConfigMap] = {}
        self._versions = itertools.count(1)

    def _model(self, body: dict[str, Any], created: dt.datetime | None = None) -> V1ConfigMap:
        meta = body["metadata"]
        owners = [
            V1OwnerReference(
                api_version=o["apiVersion"], kind=o["kind"], name=o["name"], uid=o["uid"]
            )
            for o in meta.get("ownerReferences") or []
        ]
        return V1ConfigMap(
            data=dict(body.get("data") or {}),
            metadata=V1ObjectMeta(
                name=meta["name"],
                resource_version=str(next(self._versions)),
                creation_timestamp=created or dt.datetime.now(dt.UTC),
                owner_references=owners or None,
            ),
        )

    def _current(self, name: str) -> V1ConfigMap:
        if name not in self.items:
            raise ApiException(status=404, reason="NotFound")
        return self.items[name]

    def read_namespaced_config_map(self, name: str, namespace: str) -> V1ConfigMap:
        return copy.deepcopy(self._current(name))

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] in self.items:
            raise ApiException(status=409, reason="AlreadyExists")
        self.items[body["metadata"]["name"]] = self._model(body)

    def replace_namespaced_config_map(
        self, name: str, namespace: str, body: dict[str, Any]
    ) -> None:
        current = self._current(name)
        if body["metadata"].get("resourceVersion") != current.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.items[name] = self._model(body)

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        current = self._current(name)
        data = {"metadata": {"name": name, **body["metadata"]}, "data": current.data}
        self.items[name] = self._model(data, current.metadata.creation_timestamp)

    def delete_namespaced_config_map(self, name: str, namespace: str, body: Any = None) -> None:
        current = self._current(name)
        wanted = body.preconditions.resource_version if body and body.preconditions else None
        if wanted and wanted != current.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        del self.items[name]


def fake_claims(namespace: str = "tenants", ttl: float = 60) -> Claims:
    """Signup claims on FakeConfigMaps."""
    claims = Claims(namespace, ttl)
    claims.api = FakeConfigMaps()  # type: ignore[assignment]
    return claims
