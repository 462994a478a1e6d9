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


def app(secret: str, refresh: Callable[[set[str], str, str | None], list[str]]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not signature_ok(secret, body, request.headers.get("X-Hub-Signature-256")):
            return web.json_response({"detail": "bad signature"}, status=401)
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

    application = web.Application(client_max_size=25 * 1024 * 1024)
    application.router.add_post("/webhooks/github", handle)
    return application


async def serve(
    host: str, port: int, secret: str, refresh: Callable[[set[str], str, str | None], list[str]]
) -> web.AppRunner:
    runner = web.AppRunner(app(secret, refresh), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
