"""SESTemplate: an SES email template. What kopf calls, and what other kinds may use.

The template's own work (desired form, create, adopt, drift, delete) is in `reconciler`;
other kinds use only what this module exports.
"""

from __future__ import annotations

from typing import Any

import kopf

from herd_core import conditions as cond
from herd_core import kube
from herd_operator.handlers.common import Object, exclusive, forget, guard, guard_delete, reconcile
from herd_operator.handlers.sestemplate import reconciler
from herd_operator.settings import get_settings

KIND = reconciler.KIND
PLURAL = reconciler.PLURAL


def on_change(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, get_settings(), lambda: reconciler.reconcile(obj, get_settings()))


def repair(obj: Object) -> None:
    """Drift, from the sweep (drift.py), under the object's lock and read afresh."""
    guard(obj, 0, get_settings(), lambda: reconciler.repair_drift(obj, get_settings()))


def on_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, get_settings(), lambda: reconciler.delete(obj, get_settings()))
    forget(obj.uid)


def ready_name(namespace: str, name: str) -> str | None:
    """The SES name of the SESTemplate `namespace/name` once it is Ready; None before."""
    template = kube.get_object(PLURAL, namespace, name)
    status = (template or {}).get("status", {})
    if template is None or not cond.is_true(status.get("conditions"), cond.READY):
        return None
    return str(status["templateName"])
