"""What an AWS error means for a reconciler: retry later, wait for a new spec, or wait for
a quota: a rate quota (throttling) is retried with backoff, a resource quota reached
(LimitExceeded on a create) is not a throttle and is reported as QuotaExceeded."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from herd_core import quotas

# Codes AWS uses for throttling and transient trouble across services.
_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalErrorException",
    "InternalFailure",
    "InternalServerError",
}
_INVALID = {
    "InvalidParameterException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidTemplate",
    "InvalidTemplateException",
    "ValidationError",
    "ValidationException",
    "InvalidOAuthFlowException",
    "ScopeDoesNotExistException",
    "InvalidRenderingParameter",
    "MissingRenderingAttribute",
    "MissingRenderingAttributeException",
    "InvalidRenderingParameterException",
}


class InvalidSpec(Exception):
    """The spec cannot work as written: terminal until the spec changes."""

    reason = "InvalidSpec"
    terminal = True  # False: retried with backoff, as a human may clear the obstacle


class Waiting(Exception):
    """A dependency is not ready yet: look again shortly; not an error."""


class Pending(Exception):
    """A dependency is not ready yet, and its own change will wake this object up: the
    handler ends (no retry, no poll) with Ready=False, and the waker reconciles again."""


class Recoverable(Exception):
    """Throttling, 5xx, a network fault: retried with backoff."""


class AlreadyExists(InvalidSpec):
    """An AWS object of that name exists and adoption was not asked for."""

    reason = "AlreadyExists"


class AdoptionRefused(InvalidSpec):
    """Adoption was asked for, but the object is another resource's or the namespace may
    not adopt (HERD_ADOPTION_NAMESPACES)."""

    reason = "AdoptionRefused"


class SecretConflict(InvalidSpec):
    """The Secret to write exists and is not ours: it is never overwritten. Retried with
    backoff: deleting that Secret is enough to go on."""

    reason = "SecretConflict"
    terminal = False


class QuotaExceeded(InvalidSpec):
    """An AWS resource quota is reached (or SES's daily sending quota): retrying soon
    changes nothing. Terminal like InvalidSpec (the spec's next change retries at once), and
    the operator also looks once more after a slow delay (quota_retry_delay), as someone
    may raise the quota or free a resource meanwhile; never hammered."""

    reason = "QuotaExceeded"

    def __init__(
        self, message: str, key: str = "", used: int | None = None, limit: float | None = None
    ) -> None:
        super().__init__(message)
        self.key, self.used, self.limit = key, used, limit


def code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def classify(err: Exception) -> Exception:
    """Map a botocore error to InvalidSpec or Recoverable (unknown ones count as recoverable)."""
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        c = code(err)
        message = err.response.get("Error", {}).get("Message") or c
        if c in _INVALID:
            return InvalidSpec(f"{c}: {message}")
        reached = quota_reached(err)
        if reached is not None:
            return reached
        if c in _TRANSIENT or status >= 500 or status == 429:
            return Recoverable(f"AWS {c or status}: {message}")
        return Recoverable(f"AWS {c}: {message}")
    if isinstance(err, BotoCoreError):
        return Recoverable(f"AWS unreachable: {err}")
    return err


def quota_reached(err: ClientError) -> QuotaExceeded | None:
    """The resource quota `err` reports reached, with its figures where the client factory
    counted them (Error.Quota, herd_core.aws); None for any other error."""
    error: dict[str, Any] = dict(err.response.get("Error") or {})
    c = code(err)
    quota = next(
        (q for q in quotas.counts() if err.operation_name in q.operations and c == q.error[0]),
        None,
    )
    if quota is None and c == quotas.SES_DAILY[0] and "daily" in str(error.get("Message")).lower():
        quota = quotas.QUOTAS["ses.sending_quota"]
    if quota is None:
        return None
    found = error.get("Quota") or {}
    used = found.get("Used")
    limit = float(found.get("Limit") or quota.default)
    message = quotas.reached_message(quota, used, limit, str(found.get("Where") or ""))
    return QuotaExceeded(message, quota.key, used, limit)


def is_not_found(err: ClientError) -> bool:
    return code(err) in {
        "TemplateDoesNotExist",
        "ResourceNotFoundException",
        "NotFoundException",
        "UserNotFoundException",
        "NoSuchEntity",
    }
