"""`python -m moto.server`, one request at a time (SQS aside).

moto 5.2's backends are not thread-safe. Its Cognito user pool iterates over its users to find
one by email while another request thread inserts one, and answers 500 (`RuntimeError:
OrderedDict mutated during iteration`); with thousands of users, thousands of concurrent
AdminCreateUser calls failed so (bench/tenants.py, 10,000 Tenants). moto's work is Python
under the GIL either way, so serializing requests costs little; connections stay concurrent
(threaded server, HTTP/1.1 keep-alive: `KeepAlive`), only the handling of requests is one at a
time. SQS is left out: a long poll waits inside moto, and would hold every other request up.

Inside the lock, `moto_index` finds a pool's users by email through an index (moto goes
through every user of the pool), and `aws_rules` enforces what AWS enforces and moto does
not (an app client's attribute read and write permissions): it reads moto's state. Outside
it, `moto_sqs` enqueues a message without counting the queue first.
`aws_quotas` holds AWS's quotas: its request rates as requests arrive, its resource counts
under the lock (they read moto's state); HERD_LOCAL_AWS_QUOTAS=false turns it off.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import DechunkedInput, run_simple
from werkzeug.wsgi import LimitedStream

from herd_devkit.local import aws_quotas, aws_rules, moto_index, moto_sqs
from herd_devkit.settings import get_settings

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def waits(environ: dict[str, Any]) -> bool:
    """An SQS request: ReceiveMessage long-polls inside moto (up to 20 s), so it must not
    hold the lock; moto's SQS queues lock for themselves."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    return "/sqs/aws4_request" in auth or target.startswith("AmazonSQS.")


def serialized(app: WSGIApp) -> WSGIApp:
    """`app` with each request but SQS's handled, body included, under one lock."""
    lock = threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if waits(environ):
            return app(environ, start_response)
        with lock:
            result = app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return handle


class _NoDrain:
    """The request stream as werkzeug's handler sees it: lines (the request line, the headers)
    pass; `read` gives nothing. werkzeug reads only its after-response drain so, which on a
    kept connection would eat the client's next request."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.readline = raw.readline

    def read(self, _size: int = -1) -> bytes:
        return b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class KeepAlive(MotoRequestHandler):
    """moto's request handler, keeping connections open as AWS does. werkzeug's dev server
    answers `Connection: close` to every request, so each AWS call of a client paid a TCP
    connect and close: a quarter of the operator's CPU per Tenant in bench/tenants.py, a cost
    no real account has. A connection is safe to keep once its request body is read to the
    end (`Content-Length`, exhausted after the answer); a chunked body closes it as before."""

    def setup(self) -> None:
        super().setup()
        self._raw_rfile: Any = self.rfile
        self.rfile = _NoDrain(self._raw_rfile)  # type: ignore[assignment]
        self._body: LimitedStream | None = None
        self._keep = False

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        if isinstance(environ["wsgi.input"], DechunkedInput):
            environ["wsgi.input"] = DechunkedInput(self._raw_rfile)
            self._body, self._keep = None, False
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self._body = LimitedStream(self._raw_rfile, length)
            environ["wsgi.input"] = self._body
            self._keep = True
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        # The client's own `Connection: close` (http.server's parse set close_connection)
        # is still answered so.
        closing = self.close_connection or not self._keep
        if not closing and keyword.lower() == "connection" and value.lower() == "close":
            return
        super().send_header(keyword, value)

    def run_wsgi(self) -> None:
        self._keep = False
        super().run_wsgi()
        try:
            if self._keep and self._body is not None:
                self._body.exhaust()  # what the app left unread: the next request starts after
                return
        except Exception:  # the client went away mid-body: nothing to keep
            pass
        self.close_connection = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server: URLs it hands out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server
    run_simple(
        args.host,
        args.port,
        fronted(app),
        threaded=True,
        request_handler=KeepAlive,
    )


def fronted(app: WSGIApp) -> WSGIApp:
    """moto behind the rules and (unless turned off) the quotas of AWS, one request at a
    time; the settings are read once, here."""
    settings = get_settings()
    moto_index.install()
    moto_sqs.install()
    indexed = moto_index.tracked(app)
    if not settings.local_aws_quotas:
        return serialized(aws_rules.enforced(indexed))
    front = aws_quotas.Front(settings.aws_quotas, settings.local_ses_sandbox, settings.aws_region)
    return front.rated(serialized(front.counted(aws_rules.enforced(indexed))))


if __name__ == "__main__":
    main()
