"""Kopf's session to the API server keeps a bounded pool (herd_operator.kubesession)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import kopf
import pytest
from kubernetes import client
from kubernetes.config import kube_config

from herd_operator import kubesession


def sockets_to(port: int) -> int:
    """This process's established TCP connections to `port` (from /proc)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            remote_port, state, inode = int(cols[2].rsplit(":", 1)[1], 16), cols[3], cols[9]
            count += remote_port == port and state == "01" and inode in mine
    return count


def test_forty_requests_at_once_share_the_pool(
    operator_identity: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under the operator's own identity, through kopf's own login (its kubeconfig).
    # (the client reads KUBECONFIG when imported; the operator process has it set by then)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(operator_identity))
    saved = client.Configuration.get_default_copy()  # kopf's login sets the default

    async def run() -> tuple[list[int], int, int]:
        context = await kubesession.login(
            2, [], logger=logging.getLogger("test"), settings=kopf.OperatorSettings()
        )
        assert isinstance(context, kopf.AiohttpSession)
        session = context.aiohttp_session
        port = urlparse(context.server).port or 443
        before = sockets_to(port)

        async def get() -> int:
            async with session.get(f"{context.server}/version") as response:
                await response.read()
                return response.status

        try:
            statuses = await asyncio.gather(*(get() for _ in range(40)))
            return statuses, sockets_to(port) - before, session.connector.limit  # type: ignore[union-attr]
        finally:
            await session.close()

    try:
        statuses, opened, limit = asyncio.run(run())
    finally:
        client.Configuration.set_default(saved)
    assert statuses == [200] * 40
    # Kopf's own session opened one connection per request in flight (40 here).
    assert 1 <= opened <= kubesession.pool_size(2, []) == 8, opened
    assert limit == 8


def test_the_pool_grows_with_the_namespaces_watched() -> None:
    assert kubesession.pool_size(32, []) == 32 + kubesession.WATCHED_KINDS
    assert kubesession.pool_size(32, ["a", "b", "c"]) == 32 + 3 * kubesession.WATCHED_KINDS


def test_aiohttp_is_what_kopf_uses() -> None:
    # The session is handed to kopf as is: it must be the aiohttp kopf itself runs on.
    assert kopf.AiohttpSession.__dataclass_fields__["aiohttp_session"].type in (
        "aiohttp.ClientSession",
        aiohttp.ClientSession,
    )
