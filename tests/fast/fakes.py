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
from kubernetes.client.exceptions import ApiException
from moto import mock_aws

from herd_api.claims import Claims
from herd_api.kubeapi import KubeApi
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

    async def get(self, slug: str) -> dict[str, Any] | None:
        obj = self.objects.get(slug)
        return copy.deepcopy(obj) if obj else None

    async def create(self, spec: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
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

    async def list(
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

    async def delete(self, slug: str) -> bool:
        return self.objects.pop(slug, None) is not None

    async def events(self, slug: str, limit: int = 20) -> list[dict[str, Any]]:
        return []

    async def reachable(self) -> bool:
        return self.up


class FakeConfigMaps(KubeApi):
    """The ConfigMap calls signup claims make (herd_api.kubeapi's), with the API server's
    answers: 409 on a taken name or a stale resourceVersion, 404 on a missing one."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._versions = itertools.count(1)

    def _stored(self, body: dict[str, Any], created: str | None = None) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = {
            **copy.deepcopy(body["metadata"]),
            "resourceVersion": str(next(self._versions)),
            "creationTimestamp": created or now,
        }
        return {"metadata": meta, "data": dict(body.get("data") or {})}

    @staticmethod
    def _name(path: str) -> str:
        return path.rsplit("/", 1)[-1]

    def _current(self, name: str) -> dict[str, Any]:
        if name not in self.items:
            raise ApiException(status=404, reason="NotFound")
        return self.items[name]

    async def get(self, path: str, query: Any = None) -> dict[str, Any] | None:
        found = self.items.get(self._name(path))
        return copy.deepcopy(found) if found else None

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] in self.items:
            raise ApiException(status=409, reason="AlreadyExists")
        self.items[body["metadata"]["name"]] = self._stored(body)
        return copy.deepcopy(self.items[body["metadata"]["name"]])

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self._current(self._name(path))
        meta = {**current["metadata"], **body.get("metadata", {})}
        data = {**current["data"], **body.get("data", {})}
        self.items[meta["name"]] = self._stored(
            {"metadata": meta, "data": data}, current["metadata"]["creationTimestamp"]
        )
        return copy.deepcopy(self.items[meta["name"]])

    async def delete(self, path: str, resource_version: str | None = None) -> bool:
        name = self._name(path)
        if name not in self.items:
            return False
        if resource_version and resource_version != self.items[name]["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        del self.items[name]
        return True


def fake_claims(namespace: str = "tenants", ttl: float = 60) -> Claims:
    """Signup claims on FakeConfigMaps."""
    return Claims(namespace, ttl, FakeConfigMaps())
