"""Fakes for the fast layer: AWS as moto in this process, and what the API server would
hold, in a dict."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from moto import mock_aws

from herd_api.tenants import TenantStore, digest, tenant_body
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

    def find(self, label: str, value: str) -> list[dict[str, Any]]:
        want = digest(value)
        return [
            copy.deepcopy(o)
            for o in self.objects.values()
            if o["metadata"].get("labels", {}).get(label) == want
        ]

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

    def list(self, limit: int, continue_: str | None) -> tuple[list[dict[str, Any]], str | None]:
        names = sorted(self.objects)
        try:
            start = int(continue_ or 0)
        except ValueError as err:
            raise ApiException(status=410, reason="Expired") from err
        page = names[start : start + limit]
        more = start + limit < len(names)
        return [copy.deepcopy(self.objects[n]) for n in page], str(start + limit) if more else None

    def delete(self, slug: str) -> bool:
        return self.objects.pop(slug, None) is not None

    def reachable(self) -> bool:
        return self.up
