"""Kopf's HTTP session to the API server, with a bounded connection pool.

Kopf's own session has no connection limit: each concurrent request opens a TLS connection,
and the pool keeps it. Every connection holds a 128 KiB read buffer in asyncio's SSL protocol
plus OpenSSL's own. Objects that retry in step (an AWS outage, a burst of Tenants) patch and
post events together, so the pool grew to ~2 connections per such object: 600 connections,
76 MiB of buffers, for 300 Tenants in retry backoff (a tracemalloc snapshot), the ~230 KB per
retrying object that bench/README.md records. With a limit, requests beyond it wait for a
connection instead.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import kopf

# Watch streams hold a connection each for as long as they run: one per kind Kopf serves
# (Tenant, CognitoClient, SESTemplate, Application, peering, namespaces) and namespace.
WATCHED_KINDS = 6


def pool_size(requests: int, namespaces: list[str]) -> int:
    """Connections for `requests` at once beside every watch stream."""
    return requests + WATCHED_KINDS * max(1, len(namespaces))


async def login(requests: int, namespaces: list[str], **kwargs: Any) -> kopf.AiohttpSession | None:
    """Kopf's own login (in-cluster, else the kubeconfig), into a session whose pool holds
    at most `pool_size` connections."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=pool_size(requests, namespaces), ssl=info.as_ssl_context()
        ),
        headers={"User-Agent": "herd-operator", **info.as_http_headers()},
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        aiohttp_session=session,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )
