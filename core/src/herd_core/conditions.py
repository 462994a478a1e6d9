"""Status conditions in the Kubernetes shape (type, status, reason, message, times)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

READY = "Ready"
SYNCED = "Synced"

# Reasons, as ACK and Crossplane name them.
AVAILABLE = "Available"
RECONCILE_SUCCESS = "ReconcileSuccess"
CREATING = "Creating"
RECOVERABLE = "Recoverable"
INVALID_SPEC = "InvalidSpec"
ALREADY_EXISTS = "AlreadyExists"
ADOPTION_REFUSED = "AdoptionRefused"
SECRET_CONFLICT = "SecretConflict"
# Reasons that wait for a new spec (or a human), not for time.
TERMINAL = (INVALID_SPEC, ALREADY_EXISTS, ADOPTION_REFUSED)
DELETING = "Deleting"
DELETION_BLOCKED = "DeletionBlocked"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The list with `type_` set; lastTransitionTime moves only when the status changes."""
    value = "Unknown" if status is None else ("True" if status else "False")
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions or ():
        if cond.get("type") != type_:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        result.append(
            _condition(
                type_,
                value,
                reason,
                message,
                generation,
                now() if changed else cond.get("lastTransitionTime") or now(),
            )
        )
    if not found:
        result.append(_condition(type_, value, reason, message, generation, now()))
    return result


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int | None, when: str
) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def get(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    cond = get(conditions, type_)
    return cond is not None and cond.get("status") == "True"
