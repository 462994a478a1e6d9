"""Plain JSON requests through a kubernetes ApiClient (its auth, TLS and default headers,
Impersonate-User included), without the generated models: a sync of thousands of objects
spends most of its client time building and unbuilding those."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from yarl import URL

Query = list[tuple[str, str]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Query
    body: str | None = None
    content_type: str = "application/json"


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


def send(api: ApiClient, req: Request, timeout: Any = None) -> dict[str, Any]:
    return call(api, req.method, req.path, req.query, req.body, req.content_type, timeout)


def stream(api: ApiClient, path: str, query: Query, timeout: Any) -> tuple[Any, Iterator[str]]:
    """A watch: its response (close it to stop) and its lines."""
    raw = request(api, "GET", path, query, timeout=timeout)
    return raw, iter_resp_lines(raw)  # type: ignore[no-untyped-call]


def many(
    api: ApiClient, requests: Sequence[Request], concurrency: int, timeout: float = 120
) -> list[dict[str, Any] | ApiException]:
    """Each request's JSON answer, or its ApiException (status 0: no answer), in order,
    `concurrency` in flight. On one event loop (aiohttp, whose parser is C) a request costs
    the client about half the CPU of a thread over urllib3, CPU the API server wants when a
    sync sends thousands of them on a small machine."""
    if not requests:
        return []
    cfg: Configuration = api.configuration
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if in_loop or cfg.proxy:  # not the common case: the thread pool over urllib3
        return _threaded(api, requests, concurrency, timeout)
    # Auth (a token file is re-read when due) and default headers, once for the batch.
    first = requests[0]
    _m, _u, headers, _b, _p = api.param_serialize(
        first.method,
        first.path,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    return asyncio.run(_many(cfg, headers, requests, concurrency, timeout))


async def _many(
    cfg: Configuration,
    headers: dict[str, str],
    requests: Sequence[Request],
    concurrency: int,
    timeout: float,
) -> list[dict[str, Any] | ApiException]:
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=_ssl_context(cfg))
    answers: list[dict[str, Any] | ApiException] = [{} for _ in requests]
    todo = iter(range(len(requests)))
    async with aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as session:

        async def one(req: Request) -> dict[str, Any] | ApiException:
            try:
                async with session.request(
                    req.method,
                    URL(cfg.host + req.path, encoded=True),
                    params=req.query,
                    data=req.body,
                    headers={"Content-Type": req.content_type},
                    server_hostname=cfg.tls_server_name or None,
                ) as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as err:
                return ApiException(status=0, reason=f"no answer: {err!r}")
            if not 200 <= response.status <= 299:
                return ApiException(
                    status=response.status,
                    reason=response.reason,
                    body=body.decode("utf-8", "replace"),
                )
            out: dict[str, Any] = json.loads(body)
            return out

        async def worker() -> None:
            # `concurrency` of these, not a task per request: thousands of pending tasks
            # would raise the process's memory high-water mark for good.
            for i in todo:
                answers[i] = await one(requests[i])

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return answers


def _ssl_context(cfg: Configuration) -> ssl.SSLContext | bool:
    """The TLS the ApiClient's urllib3 pool would use."""
    if not cfg.verify_ssl:
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert, cadata=cfg.ca_cert_data)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.assert_hostname is False:
        ctx.check_hostname = False
    return ctx


def _threaded(
    api: ApiClient, requests: Sequence[Request], concurrency: int, timeout: float
) -> list[dict[str, Any] | ApiException]:
    def one(req: Request) -> dict[str, Any] | ApiException:
        try:
            return send(api, req, timeout)
        except ApiException as err:
            return err
        except urllib3.exceptions.HTTPError as err:
            return ApiException(status=0, reason=f"no answer: {err!r}")

    with ThreadPoolExecutor(max(1, min(concurrency, len(requests)))) as pool:
        return list(pool.map(one, requests))
