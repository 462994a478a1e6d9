"""Prometheus metrics of the API."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("herd_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("herd_api_request_seconds", "HTTP request duration", ["method", "route"])
SIGNUPS = Counter("herd_api_signups_total", "Signups by outcome", ["outcome"])
