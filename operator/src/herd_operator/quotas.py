"""The operator's AWS quota headroom as Prometheus gauges (herd_aws_quota_used/limit): app
clients in the default user pool and SES templates in the Region, the resource quotas that
grow with Tenants and SESTemplates. Read by the drift sweep's thread at most every
quota_refresh_interval: a page per 60 clients and per 100 templates, paced as every call."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError

from herd_core import aws, quotas, usage
from herd_operator import metrics
from herd_operator.settings import Settings

log = logging.getLogger("herd.quotas")


def refresh(settings: Settings) -> dict[tuple[str, str], tuple[int, float]]:
    """Read each quota's use and set the gauges; {(quota, scope): (used, limit)}."""
    read: dict[tuple[str, str], tuple[int, float]] = {}

    def gauge(key: str, scope: str, count: int) -> None:
        limit = quotas.limit(key, settings.aws_quotas)
        metrics.QUOTA_USED.labels(key, scope).set(count)
        metrics.QUOTA_LIMIT.labels(key, scope).set(limit)
        read[(key, scope)] = (count, limit)

    try:
        if settings.cognito_user_pool_id:
            pool = settings.cognito_user_pool_id
            idp = aws.shared("cognito-idp", settings)
            gauge("cognito.app_clients_per_user_pool", pool, usage.app_clients(idp, pool))
        ses = aws.shared("ses", settings)
        gauge("ses.templates_per_region", settings.aws_region, usage.templates(ses))
    except (ClientError, BotoCoreError) as err:
        log.warning("AWS quota use not read: %s", err)
    return read
