"""The one factory for boto3 clients: endpoint override (moto), region and retry policy."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from herd_operator.settings import Settings, get_settings


def client(service: str, settings: Settings | None = None, region: str | None = None) -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL, the region and standard-mode retries.

    Standard mode retries throttling and 5xx with exponential backoff and jitter, so callers
    never write their own retry loops.
    """
    s = settings or get_settings()
    return boto3.client(
        service,
        region_name=region or s.aws_region,
        endpoint_url=s.aws_endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": s.aws_max_attempts},
            connect_timeout=5,
            read_timeout=30,
        ),
    )
