"""Tenant: a customer signup. Its flow, top to bottom, as kopf runs it.

- `on_change` runs the steps (`reconciler`: Cognito user, app client (the shared one, or a
  CognitoClient of its own when it has callbackURLs), realm, welcome email, logo). The pass
  that creates a CognitoClient waits in place for the child's first state (`waits`), then
  runs again.
- Past that wait, and for any other pass, the child's change or a new logo wakes the Tenant
  by annotation (`wakes`), from the watch events kopf gets anyway.
- `on_delete` removes what the Tenant made outside Kubernetes.
"""

from __future__ import annotations

from typing import Any

import kopf

from herd_core.errors import Pending
from herd_operator.handlers.common import (
    Object,
    exclusive,
    forget,
    fresh,
    guard_delete,
    in_thread,
    reconcile,
)
from herd_operator.handlers.common import needs_resume as common_needs_resume
from herd_operator.handlers.tenant import reconciler, waits, wakes
from herd_operator.settings import get_settings

KIND = reconciler.KIND
PLURAL = reconciler.PLURAL
TENANT_LABEL = reconciler.TENANT_LABEL  # on a Tenant's children


def needs_resume(body: kopf.Body, **kwargs: Any) -> bool:
    """As every kind's resume filter, and once more for a Ready Tenant whose admin's sub is
    not recorded yet (made before the operator recorded it): the API's tenant-admin check
    needs it, so the operator's start records it (one AdminGetUser each); and for one still
    on a CognitoClient of its own that should move to the shared client."""
    return (
        common_needs_resume(body, **kwargs)
        or not (body.get("status") or {}).get("adminSub")
        # One with a CognitoClient of its own and no callbackURLs moves to the shared client.
        or reconciler.needs_migration(body, get_settings())
    )


async def on_change(body: kopf.Body, retry: int, reason: str, **_: Any) -> None:
    """The pass that creates a Tenant's CognitoClient waits here for the child's first state,
    handed over by the child's own event (waits.child_seen), then runs again. The wait is
    bounded (HERD_CHILD_WAIT); past it, and for any other pass, the child's change wakes the
    Tenant by annotation (wakes.child_changed)."""
    uid = str(body["metadata"]["uid"])
    # From before the pass that creates the child: its first state may come before it ends.
    wait = waits.child_waits[uid] = waits.ChildWait()
    try:
        ran = await in_thread(lambda: _first_pass(body, retry, reason))
        if ran is None:
            return
        current, pending = ran
        if (
            isinstance(pending, reconciler.ChildPending)
            and pending.created
            and await waits.child_moved(wait, pending.step, get_settings().child_wait)
        ):
            again = await in_thread(lambda: _pass_again(current, retry))
            if again is None:
                return
            current = again
    finally:
        if waits.child_waits.get(uid) is wait:
            del waits.child_waits[uid]
    # A state the child reached while a pass ran, or that no pass waited for, is not lost:
    # from here on the child's events wake the Tenant, and so does this one, if it must.
    wakes.remember(current.body)
    wake = None if wait.body is None else wakes.child_wake("MODIFIED", wait.body)
    if wake is not None:
        await in_thread(lambda: wakes.wake(*wake))


def _first_pass(body: kopf.Body, retry: int, reason: str) -> tuple[Object, Pending | None] | None:
    with exclusive(body["metadata"]["uid"]):
        # As the API server has it now: the child's handler may have moved it on meanwhile.
        # A first pass of a new Tenant needs no read: nothing but the signup has written it.
        given = Object(KIND, PLURAL, body)
        first = reason == kopf.Reason.CREATE and retry == 0 and not body.get("status")
        found = given if first else fresh(given)
        if found is None:
            return None
        return found, _pass(found, retry)


def _pass_again(given: Object, retry: int) -> Object | None:
    with exclusive(given.uid):
        # Read again: the spec may have changed during the wait, or the Tenant be going.
        found = fresh(given)
        if found is not None:
            _pass(found, retry)
        return found


def _pass(current: Object, retry: int) -> Pending | None:
    """One pass of the Tenant's steps (under its lock)."""
    settings = get_settings()
    try:
        return reconcile(current, retry, settings, lambda: reconciler.reconcile(current, settings))
    except kopf.PermanentError:
        current.patch_status(phase="Failed")
        raise


def on_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, get_settings(), lambda: reconciler.delete(obj, get_settings()))
    forget(obj.uid)


# The watch-event handlers, for main's registrations.
seen, seen_changes = wakes.tenant_seen, wakes.seen_changes
child_seen, hands_over = waits.child_seen, waits.hands_over
child_changed, child_wakes = wakes.child_changed, wakes.calls_for_child_wake
logo_changed, logo_wakes = wakes.logo_changed, wakes.calls_for_logo_wake
