"""Prometheus metrics of the operator: reconciles, errors, duration, AWS quota headroom."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("herd_reconcile_total", "Reconciles by kind and result", ["kind", "result"])
ERRORS = Counter(
    "herd_reconcile_errors_total", "Failed reconciles by kind and reason", ["kind", "reason"]
)
DURATION = Histogram("herd_reconcile_duration_seconds", "Reconcile duration", ["kind"])
# AWS resource quotas the operator consumes (herd_core.quotas keys), read by quotas.py on a
# slow timer: alert on used / limit before a create fails with QuotaExceeded.
QUOTA_USED = Gauge("herd_aws_quota_used", "Use of an AWS resource quota", ["quota", "scope"])
QUOTA_LIMIT = Gauge(
    "herd_aws_quota_limit", "The AWS resource quota's value for the account", ["quota", "scope"]
)


def serve(port: int, host: str) -> None:
    if port:
        start_http_server(port, addr=host)
