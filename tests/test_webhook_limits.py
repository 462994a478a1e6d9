"""The push webhook under abuse, through real HTTP against `webhook.serve` (the operator's own
server; tests/test_application.py drives it through the running operator): a request
without a signature, or with a body over the cap, is refused before its body is read, and
the signature is checked as the body streams in."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from herd_devkit.local.process import free_port
from herd_operator.gitops import webhook
from herd_operator.settings import get_settings

SECRET = "limits-secret"
LIMIT = get_settings().webhook_max_bytes  # serve() takes the cap from the settings
HUGE = 25 * 1024 * 1024  # what the reported requests sent


@dataclass
class Served:
    port: int
    calls: list[tuple[set[str], str, str | None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/github"


@pytest.fixture
def served() -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    got = Served(free_port())

    def refresh(urls: set[str], branch: str, default: str | None) -> list[str]:
        got.calls.append((urls, branch, default))
        return ["demo"]

    runner = asyncio.run_coroutine_threadsafe(
        webhook.serve("127.0.0.1", got.port, SECRET, refresh), loop
    ).result(10)
    try:
        yield got
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push(padding: int = 0) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/dev",
            "repository": {
                "clone_url": "https://github.com/herd/platform.git",
                "default_branch": "main",
            },
            "padding": "x" * padding,
        }
    ).encode()


def raw(port: int, head: str, body: Iterable[bytes] = ()) -> tuple[int, bytes]:
    """Send a request's head (and what `body` yields, maybe far less than it announces);
    read the answer until the server closes. A server that waits for the announced body
    times the socket out instead."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in body:
            sock.sendall(chunk)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def head(length: str, signature: str | None = None) -> str:
    lines = [
        "POST /webhooks/github HTTP/1.1",
        "Host: 127.0.0.1",
        "X-GitHub-Event: push",
        "Content-Type: application/json",
        length,
    ]
    if signature is not None:
        lines.append(f"X-Hub-Signature-256: {signature}")
    return "\r\n".join(lines) + "\r\n\r\n"


def test_an_unsigned_request_is_refused_before_its_body_is_read(served: Served) -> None:
    # 25 MiB announced, not a byte of it sent: the answer comes anyway, and the connection
    # closes (nothing of the body is read or buffered, now or after the answer).
    status, rest = raw(served.port, head(f"Content-Length: {HUGE}"))
    assert status == 401
    assert b"X-Hub-Signature-256" in rest
    # The same over chunked transfer: one chunk header of 25 MiB, no data.
    status, _ = raw(served.port, head("Transfer-Encoding: chunked"), [f"{HUGE:x}\r\n".encode()])
    assert status == 401
    assert served.calls == []


def test_a_body_over_the_cap_is_413_however_it_comes(served: Served) -> None:
    # Announced: refused at once, before a byte of it is read.
    status, _ = raw(served.port, head(f"Content-Length: {HUGE}", sign(b"whatever")))
    assert status == 413
    # Chunked, so no length up front: read only up to the cap, then refused.
    chunk = 64 * 1024
    pieces = [f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"] * (LIMIT // chunk)
    pieces.append(b"1\r\nx\r\n")  # one byte over
    status, _ = raw(served.port, head("Transfer-Encoding: chunked", sign(b"whatever")), pieces)
    assert status == 413
    assert served.calls == []


def test_the_signature_is_checked_on_the_streamed_body(served: Served) -> None:
    body = push(padding=LIMIT - 1024)  # just under the cap: a big push still goes through
    assert len(body) <= LIMIT
    good = httpx.post(
        served.url,
        content=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)},
        timeout=10,
    )
    assert good.status_code == 200, good.text
    assert good.json() == {"refreshed": ["demo"]}
    assert served.calls == [({"github.com/herd/platform"}, "dev", "main")]

    forged = httpx.post(
        served.url,
        content=push(),
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(push(), "guess")},
        timeout=10,
    )
    assert forged.status_code == 401
    assert forged.json() == {"detail": "bad signature"}

    def streamed() -> Iterator[bytes]:  # chunked: the HMAC is fed as the chunks arrive
        small = push()
        for i in range(0, len(small), 7):
            yield small[i : i + 7]

    chunked = httpx.post(
        served.url,
        content=streamed(),
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(push())},
        timeout=10,
    )
    assert chunked.status_code == 200, chunked.text
    assert len(served.calls) == 2
