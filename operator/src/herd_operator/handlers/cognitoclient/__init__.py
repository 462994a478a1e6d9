"""CognitoClient: a Cognito app client whose credentials live in a Secret. What kopf calls,
and what other kinds may use.

The client's own work (create or adopt, update, Secret, drift, delete) is in `reconciler`;
other kinds use only what this module exports.
"""

from __future__ import annotations

from typing import Any

import kopf

from herd_operator.handlers.cognitoclient import reconciler
from herd_operator.handlers.common import Object, exclusive, forget, guard, guard_delete, reconcile
from herd_operator.settings import get_settings

KIND = reconciler.KIND
PLURAL = reconciler.PLURAL


def on_change(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, get_settings(), lambda: reconciler.reconcile(obj, get_settings()))


def repair(obj: Object) -> None:
    """Drift, from the sweep (drift.py), under the object's lock and read afresh."""
    settings = get_settings()
    gone = False

    def check() -> None:
        nonlocal gone
        gone = reconciler.repair_drift(obj, settings)

    guard(obj, 0, settings, check)
    if gone:
        obj.event(
            "DriftRepaired", "app client was deleted outside Herd; creating it again", warning=True
        )
        reconcile(obj, 0, settings, lambda: reconciler.reconcile(obj, settings))


def on_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, get_settings(), lambda: reconciler.delete(obj, get_settings()))
    forget(obj.uid)
