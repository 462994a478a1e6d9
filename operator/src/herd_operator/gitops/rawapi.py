"""Plain JSON requests through a kubernetes ApiClient (its auth, TLS and default headers,
Impersonate-User included), without the generated models: a sync of thousands of objects
spends most of its client time building and unbuilding those."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

Query = list[tuple[str, str]]


def request(
    api: ApiClient,
    method: str,
    path: str,
    query: Query | None = None,
    body: str | None = None,
    content_type: str = "application/json",
    timeout: Any = None,
) -> Any:
    """The urllib3 response of one request (its body not read yet); ApiException unless 2xx."""
    serialized = api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=timeout)
    raw = response.response
    if not 200 <= raw.status <= 299:
        data = raw.data
        raise ApiException(
            status=raw.status, reason=raw.reason, body=data.decode("utf-8", "replace")
        )
    return raw


def call(
    api: ApiClient,
    method: str,
    path: str,
    query: Query | None = None,
    body: str | None = None,
    content_type: str = "application/json",
    timeout: Any = None,
) -> dict[str, Any]:
    raw = request(api, method, path, query, body, content_type, timeout)
    try:
        out: dict[str, Any] = json.loads(raw.data)
    finally:
        raw.release_conn()
    return out


def stream(api: ApiClient, path: str, query: Query, timeout: Any) -> tuple[Any, Iterator[str]]:
    """A watch: its response (close it to stop) and its lines."""
    raw = request(api, "GET", path, query, timeout=timeout)
    return raw, iter_resp_lines(raw)  # type: ignore[no-untyped-call]
