"""GitHub push webhook: a verified push refreshes the Applications that track that branch of
that repository at once, instead of at their next poll."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from herd_operator.settings import get_settings

log = logging.getLogger(__name__)


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :])


def normalize(url: str) -> str:
    """One form for https, ssh and scp-like URLs of the same repository."""
    url = url.strip().lower().removesuffix("/").removesuffix(".git")
    url = re.sub(r"^git@([^:]+):", r"\1/", url)
    return re.sub(r"^[a-z+]+://([^@/]+@)?", "", url)


def push_target(payload: dict[str, Any]) -> tuple[set[str], str | None]:
    repo = payload.get("repository") or {}
    urls = {
        normalize(u)
        for k in ("clone_url", "ssh_url", "html_url", "git_url", "url")
        if isinstance(u := repo.get(k), str) and u
    }
    ref = payload.get("ref") or ""
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    if branch == repo.get("default_branch"):
        return urls, branch  # HEAD-tracking Applications match too (see matches)
    return urls, branch


def matches(app: dict[str, Any], urls: set[str], branch: str, default_branch: str | None) -> bool:
    source = (app.get("spec") or {}).get("source") or {}
    if normalize(source.get("repoURL", "")) not in urls:
        return False
    revision = source.get("targetRevision") or "HEAD"
    return revision == branch or (revision == "HEAD" and branch == default_branch)


def refused(status: int, detail: str) -> web.Response:
    """An answer before the body is read to its end: the connection closes after it (see
    serve: nothing more of the body is read)."""
    response = web.json_response({"detail": detail}, status=status)
    response.force_close()
    return response


async def signed_body(request: web.Request, secret: str, limit: int) -> bytes | web.Response:
    """The body, read in chunks into an HMAC as it arrives and never beyond `limit`; or the
    refusal. Nothing is read from a request without a signature or with too long a body:
    anyone can send one, so each must cost us no more than a push event does."""
    header = request.headers.get("X-Hub-Signature-256") or ""
    if not header.startswith("sha256="):
        return refused(401, "X-Hub-Signature-256 (sha256=...) is required")
    if request.content_length is not None and request.content_length > limit:
        return refused(413, f"body larger than {limit} bytes")
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:  # chunked, or more than its Content-Length said
            return refused(413, f"body larger than {limit} bytes")
        mac.update(chunk)
        chunks.append(chunk)
    if not hmac.compare_digest(mac.hexdigest(), header[len("sha256=") :]):
        return web.json_response({"detail": "bad signature"}, status=401)
    return b"".join(chunks)


def app(
    secret: str,
    refresh: Callable[[set[str], str, str | None], list[str]],
    max_bytes: int | None = None,
) -> web.Application:
    limit = max_bytes or get_settings().webhook_max_bytes

    async def handle(request: web.Request) -> web.Response:
        body = await signed_body(request, secret, limit)
        if isinstance(body, web.Response):
            return body
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return web.json_response({"detail": "pong"})
        if event != "push":
            return web.json_response({"detail": f"ignored event {event}"}, status=202)
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"detail": "body is not JSON"}, status=400)
        urls, branch = push_target(payload)
        if not urls or not branch:
            return web.json_response({"detail": "not a branch push"}, status=202)
        default = (payload.get("repository") or {}).get("default_branch")
        names = await asyncio.get_running_loop().run_in_executor(
            None, refresh, urls, branch, default
        )
        log.info("push to %s refreshed %s", branch, names or "nothing")
        return web.json_response({"refreshed": names})

    # The body is streamed by signed_body; this only bounds any other reader.
    application = web.Application(client_max_size=limit)
    application.router.add_post("/webhooks/github", handle)
    return application


async def serve(
    host: str, port: int, secret: str, refresh: Callable[[set[str], str, str | None], list[str]]
) -> web.AppRunner:
    # No lingering: after a refusal the connection closes at once, rather than aiohttp
    # reading (to discard) up to 10 s of a body we never wanted.
    runner = web.AppRunner(app(secret, refresh), access_log=None, lingering_time=0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
