"""What an AWS error means for a reconciler: retry later, or wait for a new spec."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

# Codes AWS uses for throttling and transient trouble across services.
_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "LimitExceededException",
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
        if c in _TRANSIENT or status >= 500 or status == 429:
            return Recoverable(f"AWS {c or status}: {message}")
        return Recoverable(f"AWS {c}: {message}")
    if isinstance(err, BotoCoreError):
        return Recoverable(f"AWS unreachable: {err}")
    return err


def is_not_found(err: ClientError) -> bool:
    return code(err) in {
        "TemplateDoesNotExist",
        "ResourceNotFoundException",
        "NotFoundException",
        "UserNotFoundException",
        "NoSuchEntity",
    }
