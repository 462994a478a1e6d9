"""Plain JSON requests through a kubernetes ApiClient (its auth, TLS and default headers,
Impersonate-User included), without the generated models: a sync of thousands of objects
spends most of its client time building and unbuilding those."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import should_bypass_proxies
from kubernetes.watch.watch import iter_resp_lines

from herd_core import kubehttp

Query = list[tuple[str, str]]
SMALL_BATCH = 2  # requests; a batch this small goes through the ApiClient's own pool
POOL = 64  # kept-alive connections to one API server, all batches together
_T = TypeVar("_T")


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
    accept: str = "application/json",
) -> Any:
    """The urllib3 response of one request (its body not read yet); ApiException unless 2xx."""
    serialized = api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Accept": accept, "Content-Type": content_type},
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
    accept: str = "application/json",
) -> dict[str, Any]:
    raw = request(api, method, path, query, body, content_type, timeout, accept)
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
    proxied = bool(cfg.proxy) and not should_bypass_proxies(cfg.host, cfg.no_proxy or "")
    # Not the common case, or too few to pay for a loop, a TLS context and new connections:
    # the thread pool over the ApiClient's own (kept-alive) urllib3 pool.
    if in_loop or proxied or len(requests) <= SMALL_BATCH:
        return _threaded(api, requests, concurrency, timeout)
    answers = _batch(api, requests, concurrency, timeout)
    # Once more, with fresh auth, for what got a 401: a token that expired within the batch.
    expired = [i for i, answer in enumerate(answers) if _unauthorized(answer)]
    if expired:
        again = _batch(api, [requests[i] for i in expired], concurrency, timeout)
        for i, answer in zip(expired, again, strict=True):
            answers[i] = answer
    return answers


def _batch(
    api: ApiClient, requests: Sequence[Request], concurrency: int, timeout: float
) -> list[dict[str, Any] | ApiException]:
    # Auth (a token file or an exec plugin is asked again when due) and the default headers,
    # Impersonate-User included, once for the batch.
    _m, _u, headers, _b, _p = api.param_serialize(
        requests[0].method,
        requests[0].path,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    return _shared_loop().run(_many(api.configuration, headers, requests, concurrency, timeout))


class _Loop:
    """One event loop, on a thread of its own, for every batch of the process, its sessions
    (and their kept-alive connections) kept: a loop, a connection pool and a TLS handshake
    per connection for each batch cost an Application's sync more than its requests did."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[tuple[str, int], aiohttp.ClientSession] = {}
        threading.Thread(target=self.loop.run_forever, name="rawapi-loop", daemon=True).start()

    def run(self, batch: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(batch, self.loop).result()

    def close(self) -> None:
        """At exit: the sessions closed (else aiohttp warns of each), the loop stopped."""

        async def close_all() -> None:
            for session in list(self.sessions.values()):
                await session.close()

        with contextlib.suppress(Exception):  # exiting anyway
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def session(self, cfg: Configuration) -> aiohttp.ClientSession:
        """The session for `cfg`'s server and TLS (in the loop: aiohttp binds it there)."""
        tls = kubehttp.tls(cfg)
        key = (cfg.host, id(tls))
        found = self.sessions.get(key)
        if found is None or found.closed:
            found = self.sessions[key] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL, ssl=tls),
                cookie_jar=aiohttp.DummyCookieJar(),  # each request carries its own auth
            )
        return found


_loop: _Loop | None = None
_loop_guard = threading.Lock()


def _shared_loop() -> _Loop:
    global _loop
    with _loop_guard:
        if _loop is None:
            _loop = _Loop()
            atexit.register(_loop.close)
        return _loop


def _forget_loop() -> None:
    """In a forked child: the loop's thread is not there (a render child never batches)."""
    global _loop
    _loop = None


os.register_at_fork(after_in_child=_forget_loop)


def _unauthorized(answer: dict[str, Any] | ApiException) -> bool:
    return isinstance(answer, ApiException) and answer.status == 401


async def _many(
    cfg: Configuration,
    headers: dict[str, str],
    requests: Sequence[Request],
    concurrency: int,
    timeout: float,
) -> list[dict[str, Any] | ApiException]:
    session = _shared_loop().session(cfg)
    answers: list[dict[str, Any] | ApiException | None] = [None] * len(requests)
    todo = iter(range(len(requests)))

    async def one(req: Request) -> dict[str, Any] | ApiException:
        return await kubehttp.send(
            session,
            cfg,
            req.method,
            req.path,
            req.query,
            req.body,
            {**headers, "Content-Type": req.content_type},
            timeout,
        )

    async def worker() -> None:
        # `concurrency` of these, not a task per request: thousands of pending tasks would
        # raise the process's memory high-water mark for good.
        for i in todo:
            answers[i] = await one(requests[i])

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(requests))))))
    done = [a for a in answers if a is not None]
    assert len(done) == len(requests)
    return done


def _threaded(
    api: ApiClient, requests: Sequence[Request], concurrency: int, timeout: float
) -> list[dict[str, Any] | ApiException]:
    def one(req: Request) -> dict[str, Any] | ApiException:
        try:
            return send(api, req, timeout)
        except ApiException as err:
            return err
        except urllib3.exceptions.HTTPError as err:
            return ApiException(status=0, reason=f"no answer: {type(err).__name__}: {err}")

    with ThreadPoolExecutor(max(1, min(concurrency, len(requests)))) as pool:
        return list(pool.map(one, requests))
