"""The one factory for boto3 clients: endpoint override (moto), region and retry policy."""

from __future__ import annotations

import json
import threading
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from herd_core.settings import Settings, get_settings

# Parameters that name the resource a call acts on (for the IAM least-privilege test).
_RESOURCE_PARAMS = (
    "QueueUrl",
    "TableName",
    "TemplateName",
    "Template",
    "UserPoolId",
    "Source",
    "ClientId",
)
_log_lock = threading.Lock()


def _record(path: Path, service: str, params: dict[str, Any], model: Any, **_: Any) -> None:
    named = {k: params[k] for k in _RESOURCE_PARAMS if k in params}
    if isinstance(named.get("Template"), dict):
        named["TemplateName"] = named.pop("Template").get("TemplateName")
    line = json.dumps({"service": service, "operation": model.name, "params": named})
    with _log_lock, path.open("a") as f:
        f.write(line + "\n")


def client(
    service: str,
    settings: Settings | None = None,
    region: str | None = None,
    unsigned: bool = False,
    max_pool_connections: int = 10,
) -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL, the region and standard-mode retries.

    Standard mode retries throttling and 5xx with exponential backoff and jitter, so callers
    never write their own retry loops. Unsigned clients call public APIs without credentials.
    """
    s = settings or get_settings()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": s.aws_max_attempts},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=max_pool_connections,
        # Public APIs (Cognito InitiateAuth) need no credentials, so no IAM permission.
        **({"signature_version": UNSIGNED} if unsigned else {}),
    )
    keys: dict[str, str] = {}
    if s.aws_access_key_id and s.aws_secret_access_key:
        keys = {
            "aws_access_key_id": s.aws_access_key_id,
            "aws_secret_access_key": s.aws_secret_access_key.get_secret_value(),
        }
    c = boto3.client(
        service,
        region_name=region or s.aws_region,
        endpoint_url=s.aws_endpoint_url,
        config=config,
        **keys,
    )
    if s.aws_call_log and not unsigned:
        c.meta.events.register("before-parameter-build", partial(_record, s.aws_call_log, service))
    return c


_shared: dict[tuple[Any, ...], Any] = {}
_shared_lock = threading.Lock()


def shared(service: str, settings: Settings | None = None, region: str | None = None) -> Any:
    """One client per service, region and settings for the whole process.

    Building a client costs tens of milliseconds of CPU (endpoint and model loading), more
    than the call it makes against moto; a handler that builds one per reconcile spends most
    of its time there. boto3 clients are thread-safe; building one is not (the default
    session), hence the lock. Its pool fits the operator's handler threads.
    """
    s = settings or get_settings()
    key = (
        service,
        region or s.aws_region,
        s.aws_endpoint_url,
        s.aws_access_key_id,
        s.aws_max_attempts,
        str(s.aws_call_log),
    )
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = client(service, s, region, max_pool_connections=64)
        return found


def issuer_url(region: str, pool_id: str) -> str:
    """The `iss` of a Cognito pool's tokens (the real AWS URL, also under moto): the operator
    hands it to tenants, the API checks admin tokens against it."""
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
