"""The FastAPI application: routes, CORS, metrics, request logs."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herd_api.api import deps
from herd_api.api.main import api_router
from herd_api.core import verification
from herd_api.core.config import Settings, get_settings
from herd_api.core.metrics import LATENCY, REQUESTS
from herd_core import kube

log = logging.getLogger("herd.api")


class ConfigurationError(RuntimeError):
    """The API cannot run safely as configured."""


def check(settings: Settings) -> None:
    """Refuse to start rather than run insecurely."""
    if not settings.admin_client_id:
        # Without it a token from any app client of the pool would pass as an admin's.
        raise ConfigurationError(
            "HERD_ADMIN_CLIENT_ID is required: the app client of the admin page "
            "(`herd aws bootstrap` creates it as herd-admin)"
        )
    if settings.signup_email_verification:
        # Without them no signup could be verified, so none could ever become a Tenant.
        key = settings.signup_token_key
        if key is None or len(key.get_secret_value()) < 32:
            raise ConfigurationError(
                "HERD_SIGNUP_TOKEN_KEY is required while email verification is on: the key "
                "(at least 32 characters, from a Secret) that signs the verification links. "
                "HERD_SIGNUP_EMAIL_VERIFICATION=false makes Tenants at once instead"
            )
        if not settings.email_queue_url:
            raise ConfigurationError(
                "HERD_EMAIL_QUEUE_URL is required while email verification is on: the "
                "verification emails go through the email queue"
            )


class Observe:
    """Counts, times and logs each request: a plain ASGI middleware (Starlette's
    BaseHTTPMiddleware runs each request through a task group and memory streams of its own,
    which cost the API a tenth of its CPU per signup)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500  # no answer began: the server answers 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router put the matched route in the scope on the way in.
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            elapsed = time.perf_counter() - started
            REQUESTS.labels(method, path, code).inc()
            LATENCY.labels(method, path).observe(elapsed)
            if path != "/healthz":
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": path,
                        "status": code,
                        "ms": round(elapsed * 1000, 1),
                    },
                )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await deps.get_kube().close()


def create_app() -> FastAPI:
    settings = get_settings()
    check(settings)
    kube.load_config(settings)
    app = FastAPI(
        title="Herd signup API",
        version="1.0.0",
        description="Sign up for Herd, follow the signup, administer tenants.",
        # Refused with 413 while reading, before parsing or any dependency: the most a
        # request can make us hold is this.
        max_body_size=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.include_router(api_router)

    # A route, not a mounted app: a mount answers /metrics with a redirect to /metrics/.
    # Not for the public: the Ingress exposes only the pages and /v1 (see the chart).
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                verification.TOKEN_HEADER,
            ],
        )

    app.add_middleware(Observe)
    return app
