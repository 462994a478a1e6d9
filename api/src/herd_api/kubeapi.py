"""The API's Kubernetes client: plain JSON over aiohttp on the server's one event loop.

A signup is a few small writes. Through the sync kubernetes client each cost the API a hop
to a thread, a urllib3 round trip under the GIL with the other threads, and a generated
model built from the answer; the API then spent more CPU per signup than the API server
(bench/api.py, 0.47x its ceiling). Here each is one request on the loop that serves the
signup, and the answer is a dict.

Who it is does not change: the host, TLS and credentials are those of the configuration
`herd_core.kube.load_config` loaded (in a pod, the ServiceAccount's token file, read again
as it rotates; in the benches and tests, the chart ServiceAccount's TokenRequest token). The
credentials are asked of that configuration again every AUTH_REFRESH seconds and after any
401, not per request: its refresh hook re-reads the kubeconfig each time it is asked (1 ms, a
quarter of the API's CPU per signup), and its `host` walks the environment for proxies.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import aiohttp
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException

from herd_core import kubehttp

Query = dict[str, str]
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
AUTH_REFRESH = 60.0  # seconds; a projected token is rotated well before it expires (80% of 1 h+)
TIMEOUT = 30.0  # seconds for one request, answer read: the API server answers in ms
POOL = 64  # kept-alive connections at most


class KubeApi:
    """JSON requests to the API server; ApiException (as the sync client raises) unless 2xx,
    status 0 when there was no answer."""

    def __init__(self, cfg: Configuration | None = None) -> None:
        self.cfg = cfg or Configuration.get_default_copy()
        self._ssl = kubehttp.tls(self.cfg)
        self._auth: dict[str, str] = {}
        self._auth_at = -math.inf
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session of the running loop (made on first use: aiohttp binds it to a loop)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                # The answers are JSON we parse ourselves; no cookies between requests.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str, fresh: bool = False) -> dict[str, str]:
        now = time.monotonic()
        if fresh or now - self._auth_at > AUTH_REFRESH:
            # The library re-reads a rotated token file (or asks an exec plugin) here.
            auths: dict[str, dict[str, Any]] = self.cfg.auth_settings()  # type: ignore[assignment]
            self._auth = {
                a["key"]: a["value"] for a in auths.values() if a["in"] == "header" and a["value"]
            }
            self._auth_at = now
        return {"Accept": JSON, "Content-Type": content_type, **self._auth}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Query | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        answer = await self._send(method, path, data, query, content_type)
        if isinstance(answer, ApiException) and answer.status == 401:
            # A token that expired a moment ago: once more, with the credentials of now.
            answer = await self._send(method, path, data, query, content_type, fresh=True)
        if isinstance(answer, ApiException):
            raise answer
        return answer

    async def _send(
        self,
        method: str,
        path: str,
        data: str | None,
        query: Query | None,
        content_type: str,
        fresh: bool = False,
    ) -> dict[str, Any] | ApiException:
        headers = self._headers(content_type, fresh)
        return await kubehttp.send(self._open(), self.cfg, method, path, query, data, headers)

    # -- the few calls the API makes --------------------------------------------------------
    async def get(self, path: str, query: Query | None = None) -> dict[str, Any] | None:
        """The object at `path`; None when there is none (404)."""
        try:
            return await self.call("GET", path, query=query)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", path, body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", path, body, content_type=MERGE_PATCH)

    async def delete(self, path: str, resource_version: str | None = None) -> bool:
        """Delete (under `resource_version` if given); False when it was not there (404).
        ApiException 409 when it changed since that version."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            await self.call("DELETE", path, body)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
