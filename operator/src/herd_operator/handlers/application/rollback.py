"""Auto-rollback on degraded health (Herd's extension, opt-in:
`spec.syncPolicy.automated.rollback: {onDegraded: true, after: 5m}`).

When the sync of revision R leaves the Application Degraded for longer than `after`, while the
branch head is still R, the Application pins itself to the last revision whose sync left it
Healthy (status.pinnedRevision, pinnedFrom R, a RolledBack condition, an Event) and syncs
that one. The pin holds while the head stays at R; any new commit (a fix, a revert) lifts it
and the branch is followed again: the pin never fights the branch. With no Healthy revision
to go back to, it says so once (RolledBack False, reason NoHealthyRevision, an Event) and
keeps that while R stays the Degraded sync: never a silent non-rollback."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from herd_core import conditions as cond
from herd_operator.gitops import health
from herd_operator.gitops.engine import Application, Engine
from herd_operator.handlers.application import history
from herd_operator.handlers.common import Object

ROLLED_BACK = "RolledBack"
LIFTED = "RollbackLifted"
NO_HEALTHY = "NoHealthyRevision"


def after(spec: dict[str, Any]) -> float | None:
    """Seconds Degraded before rolling back; None without the policy."""
    from herd_operator.handlers.application.reconciler import seconds

    policy = (((spec.get("syncPolicy") or {}).get("automated") or {}).get("rollback")) or {}
    if not policy.get("onDegraded"):
        return None
    return seconds(policy.get("after"), 300)


def due_at(status: dict[str, Any], spec: dict[str, Any]) -> dt.datetime | None:
    """When the last sync's Degraded health, if it lasts, rolls the Application back (or says
    that nothing Healthy came before); None when nothing would (no policy, pinned already, not
    Degraded, or said already)."""
    from herd_operator.handlers.application.reconciler import parse_time

    wait = after(spec)
    entries = status.get("history") or []
    if wait is None or status.get("pinnedRevision") or not entries:
        return None
    last = entries[-1]
    if last.get("result", "Succeeded") != "Succeeded" or last.get("healthAfter") != health.DEGRADED:
        return None
    if (status.get("sync") or {}).get("revision") not in (None, last.get("revision")):
        # The branch moved on to a commit that needed no sync: not this sync's outcome any
        # more (and no tick-by-tick reconcile while it stays so).
        return None
    if _unrollable(status, str(last.get("revision"))):
        return None  # said already
    since = parse_time(last.get("healthSince"))
    return None if since is None else since + dt.timedelta(seconds=wait)


@dataclass
class Target:
    """What to compare: the Application as it is, or pinned to an earlier revision; the status
    fields and the RolledBack condition that go with it."""

    app: Application
    status: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)


def _unrollable(status: dict[str, Any], bad: str) -> list[dict[str, Any]]:
    """The NoHealthyRevision condition said of `bad`, if any (kept while `bad` is the last,
    still Degraded sync)."""
    return [
        c
        for c in status.get("conditions") or []
        if c.get("type") == ROLLED_BACK
        and c.get("reason") == NO_HEALTHY
        and f"{bad[:8]} stayed Degraded" in c.get("message", "")
    ]


def pinned(app: Application, revision: str) -> Application:
    source = {**app.spec["source"], "targetRevision": revision}
    return replace(app, spec={**app.spec, "source": source})


def target(obj: Object, engine: Engine, app: Application, now: dt.datetime) -> Target:
    status, spec = obj.status, obj.spec
    branch = spec["source"].get("targetRevision") or "HEAD"
    pin, bad = status.get("pinnedRevision"), status.get("pinnedFrom")
    if pin:
        head = engine.head(app)
        if head != bad:
            obj.event(
                LIFTED,
                f"{branch} moved past {str(bad)[:8]} (now {head[:8]}): the rollback to "
                f"{pin[:8]} is lifted, {branch} is followed again",
            )
            return Target(app, {"pinnedRevision": None, "pinnedFrom": None})
        kept = [c for c in status.get("conditions") or [] if c.get("type") == ROLLED_BACK]
        return Target(pinned(app, pin), {"pinnedRevision": pin, "pinnedFrom": bad}, kept)
    entries = status.get("history") or []
    last = entries[-1] if entries else {}
    if last.get("healthAfter") == health.DEGRADED:
        said = _unrollable(status, str(last.get("revision")))
        if said and (status.get("sync") or {}).get("revision") in (None, last.get("revision")):
            return Target(app, {}, said)
    at = due_at(status, spec)
    if at is None or at > now:
        return Target(app)
    bad = str(last["revision"])
    head = engine.head(app)
    if head != bad:
        return Target(app)  # the branch moved on meanwhile: follow it, no pin
    why = (status.get("health") or {}).get("message") or "Degraded"
    after_ = spec["syncPolicy"]["automated"]["rollback"].get("after") or "5m"
    good = history.last_healthy(entries, other_than=bad)
    if good is None:
        message = (
            f"not rolled back: {bad[:8]} stayed Degraded for more than {after_} after its "
            f"sync ({why}), and no earlier revision in the history was Healthy to go back to; "
            f"a new commit on {branch} (a fix or a revert) is what helps"
        )
        obj.event(ROLLED_BACK, message, warning=True)
        return Target(app, {}, [_condition("False", NO_HEALTHY, message)])
    message = (
        f"rolled back from {bad[:8]} to {good['revision'][:8]}: {bad[:8]} stayed Degraded "
        f"for more than {after_} after its sync ({why}); a new commit on {branch} lifts it"
    )
    obj.event(ROLLED_BACK, message, warning=True)
    return Target(
        pinned(app, good["revision"]),
        {"pinnedRevision": good["revision"], "pinnedFrom": bad},
        [_condition("True", "Degraded", message)],
    )


def _condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": ROLLED_BACK,
        "status": status,
        "reason": reason,
        "message": message[:4000],
        "lastTransitionTime": cond.now(),
    }
