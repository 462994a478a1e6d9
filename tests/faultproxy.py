"""A fault-injecting HTTP proxy in front of moto: real requests, real failures.

The operator's AWS_ENDPOINT_URL points here. By default every request passes through; a
rule makes the next N calls of one AWS action fail (throttling or 503), or runs a callback
before moto sees the call (to let another caller in first) or after moto has done it but
before the caller hears the answer (to kill the caller exactly there).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx

from .httpserver import LoopbackServer, reply

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
}


@dataclass
class Rule:
    action: str
    times: int
    fault: str  # "throttle", "unavailable", "invalid", "before" or "after"
    callback: Callable[[], None] | None = None
    contains: bytes = b""  # only requests whose body holds this (e.g. an object's name)
    hits: int = 0


@dataclass
class FaultProxy(LoopbackServer):
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultProxy:
        proxy = self
        client = httpx.Client(timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target")
                action = target.rsplit(".", 1)[-1] if target else _form_action(body, self.path)
                rule = proxy._match(action, body)
                if rule is not None and rule.fault in ("throttle", "unavailable", "invalid"):
                    self._fail(rule.fault, json_protocol=target is not None)
                    return
                if rule is not None and rule.fault == "before" and rule.callback is not None:
                    rule.callback()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = client.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                if rule is not None and rule.fault == "after" and rule.callback is not None:
                    rule.callback()
                self._reply(
                    upstream.status_code,
                    upstream.content,
                    [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP],
                )

            def _fail(self, fault: str, json_protocol: bool) -> None:
                if fault == "unavailable":
                    self._reply(503, b"", [])
                elif fault == "invalid":  # an error that no retry mends, as AWS sees it
                    if json_protocol:
                        self._reply(
                            400,
                            b'{"__type":"InvalidParameterException","message":"refused"}',
                            [("Content-Type", "application/x-amz-json-1.1")],
                        )
                    else:
                        self._reply(
                            400,
                            b"<ErrorResponse><Error><Type>Sender</Type><Code>"
                            b"InvalidParameterValue</Code><Message>refused</Message></Error>"
                            b"<RequestId>fault</RequestId></ErrorResponse>",
                            [("Content-Type", "text/xml")],
                        )
                elif json_protocol:
                    self._reply(
                        400,
                        b'{"__type":"TooManyRequestsException","message":"Rate exceeded"}',
                        [("Content-Type", "application/x-amz-json-1.1")],
                    )
                else:
                    self._reply(
                        400,
                        b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling"
                        b"</Code><Message>Rate exceeded</Message></Error>"
                        b"<RequestId>fault</RequestId></ErrorResponse>",
                        [("Content-Type", "text/xml")],
                    )

            def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
                reply(self, status, body, headers)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.serve(Handler)
        return self

    def _match(self, action: str, body: bytes) -> Rule | None:
        with self._lock:
            self.calls.append(action)
            for rule in self.rules:
                if rule.action == action and rule.hits < rule.times and rule.contains in body:
                    rule.hits += 1
                    return rule
        return None

    def fail(
        self, action: str, times: int = 1, fault: str = "throttle", contains: str = ""
    ) -> Rule:
        return self._add(Rule(action, times, fault, contains=contains.encode()))

    def after(
        self, action: str, callback: Callable[[], None], times: int = 1, contains: str = ""
    ) -> Rule:
        return self._add(Rule(action, times, "after", callback, contains=contains.encode()))

    def before(
        self, action: str, callback: Callable[[], None], times: int = 1, contains: str = ""
    ) -> Rule:
        return self._add(Rule(action, times, "before", callback, contains=contains.encode()))

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, action: str) -> int:
        with self._lock:
            return self.calls.count(action)


def _form_action(body: bytes, path: str) -> str:
    query = urllib.parse.parse_qs(body.decode(errors="replace"))
    query.update(urllib.parse.parse_qs(urllib.parse.urlsplit(path).query))
    return query.get("Action", [""])[0]
