"""`python -m moto.server`, one request at a time (SQS aside).

moto 5.2's backends are not thread-safe. Its Cognito user pool iterates over its users to find
one by email while another request thread inserts one, and answers 500 (`RuntimeError:
OrderedDict mutated during iteration`); with thousands of users, thousands of concurrent
AdminCreateUser calls failed so (bench/tenants.py, 10,000 Tenants). moto's work is Python
under the GIL either way, so serializing requests costs little; connections stay concurrent
(threaded server, HTTP/1.1 keep-alive), only the handling of requests is one at a time. SQS is
left out: a long poll waits inside moto, and would hold every other request up.

Inside the lock, `aws_rules` enforces what AWS enforces and moto does not (an app client's
attribute read and write permissions): it reads moto's state. `aws_quotas` holds AWS's
quotas: its request rates as requests arrive, its resource counts under the lock (they read
moto's state); HERD_LOCAL_AWS_QUOTAS=false turns it off.
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
from werkzeug.serving import run_simple

from herd_devkit.local import aws_quotas, aws_rules
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
        request_handler=MotoRequestHandler,
    )


def fronted(app: WSGIApp) -> WSGIApp:
    """moto behind the rules and (unless turned off) the quotas of AWS, one request at a
    time; the settings are read once, here."""
    settings = get_settings()
    if not settings.local_aws_quotas:
        return serialized(aws_rules.enforced(app))
    front = aws_quotas.Front(settings.aws_quotas, settings.local_ses_sandbox, settings.aws_region)
    return front.rated(serialized(front.counted(aws_rules.enforced(app))))


if __name__ == "__main__":
    main()
