"""`herd api run` and `herd worker run`, plugged into the herd CLI by entry point."""

from __future__ import annotations

import threading

import typer
from pydantic import ValidationError

from herd_api.core import logging as herd_logging
from herd_api.core.config import Settings, get_settings


def settings_or_exit() -> Settings:
    """The settings, or a one-line error per bad one and exit 2: each message and where,
    never the input (it may hold a secret)."""
    try:
        return get_settings()
    except ValidationError as err:
        for e in err.errors():
            where = ".".join(str(part) for part in e["loc"]) or "settings"
            typer.echo(f"herd: bad setting ({where}): {e['msg']}", err=True)
        raise typer.Exit(2) from None


api_app = typer.Typer(no_args_is_help=True, help="The signup API.")
worker_app = typer.Typer(no_args_is_help=True, help="The queue workers.")


@api_app.command("run")
def api_run(
    host: str | None = typer.Option(None, help="Bind address (default HERD_API_HOST)"),
    port: int | None = typer.Option(None, help="Port (default HERD_API_PORT)"),
) -> None:
    """Serve the signup API with uvicorn."""
    import uvicorn

    from herd_api.main import ConfigurationError, create_app

    herd_logging.setup()
    s = settings_or_exit()
    try:
        app = create_app()
    except ConfigurationError as err:
        typer.echo(f"herd api: {err}", err=True)
        raise typer.Exit(2) from err
    uvicorn.run(
        app,
        host=host or s.api_host,
        port=port or s.api_port,
        log_config=None,
        access_log=False,
        # C where the API spends per request without doing its own work: the HTTP parser
        # (h11 is pure Python) and the event loop (libuv) under the API-server calls.
        loop="uvloop",
        http="httptools",
        # X-Forwarded-For is read by the API itself (core/clientaddr.py, right-most
        # trusted hop); uvicorn's reading would take the client-written left-most entry.
        proxy_headers=False,
    )


@worker_app.command("run")
def worker_run(
    kind: str = typer.Option(
        "emails", help="emails: send queued emails; thumbnails: make logo thumbnails"
    ),
) -> None:
    """Work a queue until SIGTERM; finishes or releases the message in hand."""
    from herd_api.worker import health
    from herd_api.worker.thumbnailer import ThumbnailWorker
    from herd_api.worker.worker import Worker
    from herd_core import kube

    if kind not in ("emails", "thumbnails"):
        typer.echo(f"herd worker: unknown kind {kind!r} (emails or thumbnails)", err=True)
        raise typer.Exit(2)
    herd_logging.setup()
    s = settings_or_exit()
    kube.load_config(s)
    worker: Worker | ThumbnailWorker = Worker(s) if kind == "emails" else ThumbnailWorker(s)
    worker.install_signal_handlers()
    alive = threading.Event()
    alive.set()
    if s.worker_port:
        health.serve(s.listen_host, s.worker_port, alive)
    try:
        worker.run()
    finally:
        alive.clear()
