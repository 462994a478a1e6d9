"""Prometheus metrics of the operator: reconciles, errors, duration."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter("herd_reconcile_total", "Reconciles by kind and result", ["kind", "result"])
ERRORS = Counter(
    "herd_reconcile_errors_total", "Failed reconciles by kind and reason", ["kind", "reason"]
)
DURATION = Histogram("herd_reconcile_duration_seconds", "Reconcile duration", ["kind"])


def serve(port: int, host: str) -> None:
    if port:
        start_http_server(port, addr=host)
