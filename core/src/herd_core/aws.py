"""The one factory for boto3 clients: endpoint override (moto), region, retry policy, and
AWS's quotas (herd_core.quotas): calls paced by the rate quotas they count against, and a
resource quota reached answered as such (named, counted, never retried as a throttle)."""

from __future__ import annotations

import json
import random
import threading
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from herd_core import pacing, quotas, usage
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
    "Bucket",
    "Key",
)
_log_lock = threading.Lock()


def _record(path: Path, service: str, params: dict[str, Any], model: Any, **_: Any) -> None:
    named = {k: params[k] for k in _RESOURCE_PARAMS if k in params}
    if isinstance(named.get("Template"), dict):
        named["TemplateName"] = named.pop("Template").get("TemplateName")
    line = json.dumps({"service": service, "operation": model.name, "params": named})
    with _log_lock, path.open("a") as f:
        f.write(line + "\n")


def _keep_params(**kwargs: Any) -> None:
    """before-parameter-build: keep the parameters pacing and _quota_reached need (the
    request context lives as long as the call, retries included)."""
    params, context = kwargs["params"], kwargs["context"]
    context["herd_params"] = {k: params[k] for k in ("UserPoolId",) if k in params}


def _paced(settings: Settings, service: str, region: str, **kwargs: Any) -> None:
    """before-sign: wait for this attempt's turn under its rate quotas. Each attempt, not
    each call: AWS counts a retry of a throttled call as a request, and retries outside the
    pace took the share left to the account's other callers (a test's reads of a template
    were throttled 16 times in a row behind the drift sweep's retries). Before the
    signature, whose time AWS checks."""
    request = kwargs["request"]
    params = request.context.get("herd_params", {})
    pacing.pace(
        service,
        region,
        kwargs["operation_name"],
        params,
        settings.aws_quotas,
        settings.aws_pace_share,
    )


def _quota_reached(c: Any, settings: Settings, service: str, **kwargs: Any) -> None:
    """needs-retry: a resource quota reached (the pool holds its 1,000 app clients) is not
    a throttle, though botocore's standard mode retries LimitExceededException as one:
    answer it at once, with the quota named and counted in the error (Error.Quota) for the
    error contract (herd_core.errors.classify)."""
    response, operation = kwargs.get("response"), kwargs["operation"]
    if response is None or response[0].status_code < 400:
        return
    parsed = response[1]
    error = parsed.get("Error") or {}
    quota = quotas.made_by(service, operation.name)
    if quota is None or error.get("Code") != quota.error[0]:
        return
    if "Quota" not in error:
        params = (kwargs.get("request_dict") or {}).get("context", {}).get("herd_params", {})
        found: tuple[int, str] | None = None
        try:
            found = usage.used(c, quota.key, params)
        except Exception:  # the count is a courtesy: never in place of the error itself
            found = None
        error["Quota"] = {
            "Key": quota.key,
            "Used": found[0] if found else None,
            "Where": found[1] if found else "",
            "Limit": quotas.limit(quota.key, settings.aws_quotas),
        }
    raise c.exceptions.from_code(error["Code"])(parsed, operation.name)


# botocore's standard mode's throttling codes, and Cognito's; SES's "Throttling" too, but not
# its daily quota, which no retry within minutes mends.
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
}


def _throttled_again(settings: Settings, **kwargs: Any) -> float | None:
    """needs-retry: past aws_max_attempts, a throttled call is tried again up to
    aws_throttle_attempts (botocore's standard mode stops at the former); the delay, or
    None to leave the decision to botocore."""
    response, attempts = kwargs.get("response"), int(kwargs.get("attempts") or 0)
    limit = settings.aws_throttle_attempts
    if response is None or limit is None or attempts < settings.aws_max_attempts:
        return None
    error = response[1].get("Error") or {}
    if error.get("Code") not in _THROTTLED or "daily" in str(error.get("Message", "")).lower():
        return None
    if attempts >= limit:
        return None
    return random.uniform(0, min(20.0, 0.5 * 2**attempts))  # as standard mode: full jitter


def client(
    service: str,
    settings: Settings | None = None,
    region: str | None = None,
    unsigned: bool = False,
    max_pool_connections: int = 10,
    timeouts: tuple[float, float] = (5, 30),
    max_attempts: int | None = None,
) -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL, the region and standard-mode retries.

    Standard mode retries throttling and 5xx with exponential backoff and jitter, so callers
    never write their own retry loops. Unsigned clients call public APIs without credentials.
    `timeouts` are (connect, read) seconds; `max_attempts` overrides the settings' attempts
    (1 for a call that must never be repeated blindly).
    """
    s = settings or get_settings()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts or s.aws_max_attempts},
        connect_timeout=timeouts[0],
        read_timeout=timeouts[1],
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
    region_name = c.meta.region_name
    c.meta.events.register("before-parameter-build", _keep_params)
    c.meta.events.register("before-sign", partial(_paced, s, service, region_name))
    # First among the service's own retry handlers (botocore calls the most specific first).
    event = f"needs-retry.{c.meta.service_model.service_id.hyphenize()}"
    c.meta.events.register_first(event, partial(_quota_reached, c, s, service))
    c.meta.events.register_first(event, partial(_throttled_again, s))
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
        s.aws_throttle_attempts,
        str(s.aws_call_log),
        tuple(sorted(s.aws_quotas.items())),
        s.aws_pace_share,
    )
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = client(service, s, region, max_pool_connections=64)
        return found


def record_presigned(settings: Settings, service: str, operation: str, **params: str) -> None:
    """Log a presigned request as a call: whoever uses it acts with our credentials, so it
    needs our permission (the IAM test checks it like any other call)."""
    if settings.aws_call_log:
        line = json.dumps({"service": service, "operation": operation, "params": params})
        with _log_lock, settings.aws_call_log.open("a") as f:
            f.write(line + "\n")


def issuer_url(region: str, pool_id: str) -> str:
    """The `iss` of a Cognito pool's tokens (the real AWS URL, also under moto): the operator
    hands it to tenants, the API checks admin tokens against it."""
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
