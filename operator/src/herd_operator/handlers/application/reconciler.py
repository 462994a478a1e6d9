"""An Application's reconcile: compare git with the cluster, sync, record status, cascade."""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import re
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import BACKGROUND_CASCADE, CASCADE_FINALIZERS, GROUP, VERSION
from herd_operator.gitops import health
from herd_operator.gitops.engine import (
    OUT_OF_SYNC,
    SYNCED,
    UNKNOWN,
    Application,
    Comparison,
    ComparisonError,
    Engine,
    SyncError,
)
from herd_operator.handlers.application import history as hist
from herd_operator.handlers.application import rollback
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings

log = logging.getLogger(__name__)
KIND = "Application"
PLURAL = "applications"
_DURATION = re.compile(r"^(\d+)(s|m|h)$")
# Argo's own refresh annotation (the webhook and `herd app sync` set it; so can kubectl).
# Not under our group: Kopf ignores changes to annotations under its storage prefix.
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
# Touched while a cascade delete waits, so that its next event resumes it.
CASCADE_RETRY_ANNOTATION = f"{GROUP}/cascade-retry"


def seconds(value: str | None, default: float) -> float:
    match = _DURATION.match(value or "")
    if not match:
        return default
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_time(ts: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None
    except ValueError:
        return None  # e.g. Argo's `refresh: normal`: the update event handles that one


def stamp() -> str:
    """A timestamp fine enough that two pushes in one second stay two refreshes."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def in_scope(namespace: str, settings: Settings) -> bool:
    patterns = settings.application_namespaces or [settings.operator_namespace]
    return any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def cascades(body: Any) -> bool:
    finalizers = (body.get("metadata") or {}).get("finalizers") or []
    return any(f in finalizers for f in CASCADE_FINALIZERS)


def cascade_delete(obj: Object, engine: Engine, timeout: float = 60) -> None:
    """Delete what the Application tracks; once all of it is gone (with Argo's /background
    finalizer: once each is asked to go), drop the cascade finalizer and the Application goes.
    Still waiting after `timeout`: touch the Application, whose next event brings us back (a
    raw event handler has no retries of its own). Gone meanwhile: nothing left to do."""
    finalizers = obj.body["metadata"].get("finalizers") or []
    wait = not any(f in BACKGROUND_CASCADE for f in finalizers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                remaining: list[str] | None = engine.cascade(engine_app(obj), wait=wait)
            except (ComparisonError, SyncError) as err:
                obj.event("DeletionError", str(err), warning=True)
                remaining = None
            if remaining == [] and _drop_cascade_finalizer(obj):
                return
            if time.monotonic() > deadline:
                obj.body_patch(metadata={"annotations": {CASCADE_RETRY_ANNOTATION: stamp()}})
                return
            time.sleep(1 if remaining is not None else 10)
    except ApiException as err:
        if err.status != 404:
            raise
        # The Application is gone already (an ordinary delete's later events): not an error.


def _drop_cascade_finalizer(obj: Object) -> bool:
    current = kube.custom().get_namespaced_custom_object(
        GROUP, VERSION, obj.namespace, PLURAL, obj.name
    )
    meta = current["metadata"]  # type: ignore[index]
    if meta.get("uid") != obj.uid:
        return True  # another Application of that name by now: ours is gone
    finalizers = [f for f in meta.get("finalizers") or [] if f not in CASCADE_FINALIZERS]
    try:
        # The resourceVersion makes this a compare-and-swap: a concurrent change means retry.
        obj.body_patch(
            metadata={"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}
        )
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def due(obj: Object, settings: Settings, now: dt.datetime) -> bool:
    """Whether the poll timer should reconcile now."""
    status = obj.status
    op = status.get("operationState") or {}
    if op.get("phase") == "Running":
        return True  # a later wave waits for an earlier one
    retry_at = parse_time(op.get("nextRetryAt"))
    if retry_at and retry_at <= now:
        return True
    compare_at = parse_time((status.get("comparisonRetry") or {}).get("nextAt"))
    if compare_at and compare_at <= now:
        return True  # a transient comparison error: sooner than the poll interval
    if any(c.get("type") == "WaitingForDependency" for c in status.get("conditions") or []):
        return True  # each tick: reconcile returns at once while the wait is the same
    rollback_at = rollback.due_at(status, obj.spec)
    if rollback_at and rollback_at <= now:
        return True  # Degraded for `after`: no event says so
    last = parse_time(status.get("reconciledAt"))
    refresh = parse_time((obj.body["metadata"].get("annotations") or {}).get(REFRESH_ANNOTATION))
    if refresh and (last is None or refresh > last):
        return True
    interval = seconds(obj.spec.get("pollInterval"), settings.app_poll_interval)
    return last is None or (now - last).total_seconds() >= interval


def engine_app(obj: Object) -> Application:
    return Application(
        name=obj.name,
        namespace=obj.namespace,
        spec=obj.spec,
        inventory=list(obj.status.get("resources") or []),
        hook_runs=[
            r
            for r in ((obj.status.get("operationState") or {}).get("syncResult") or {}).get(
                "resources"
            )
            or []
            if r.get("hookType")
        ],
    )


def reconcile(obj: Object, engine: Engine, settings: Settings) -> None:
    from herd_operator.handlers.application import dependencies  # it reads PLURAL from here

    status, spec = obj.status, obj.spec
    started = stamp()
    app = engine_app(obj)
    requested = obj.body.get("operation")
    blocked = dependencies.blocker(obj)
    if (
        blocked is not None
        and not requested
        and _condition_message(status, blocked[0]) == blocked[1]
        and status.get("observedGeneration") == obj.generation
    ):
        return  # still waiting for the same: nothing new to compare, nothing to write
    pin = rollback.Target(app, {}, _kept(status, rollback.ROLLED_BACK))
    try:
        try:
            pin = rollback.target(obj, engine, app, _now())
            comparison = engine.compare(pin.app)
        except ComparisonError:
            raise
        except Exception as err:
            # Whatever git made us trip over is the source's fault until shown otherwise: it
            # must show on the Application, never pass in silence.
            log.exception("comparing %s/%s", obj.namespace, obj.name)
            raise ComparisonError(f"unexpected {type(err).__name__}: {err}", True) from err
    except ComparisonError as err:
        message = str(err)[:4000]
        patch: dict[str, Any] = {
            "sync": {"status": UNKNOWN, "revision": (status.get("sync") or {}).get("revision")},
            "conditions": [_condition(err.condition, message), *pin.conditions],
            "reconciledAt": started,
            "observedGeneration": obj.generation,
            "comparisonRetry": _comparison_retry(status, err.transient),
            **pin.status,
        }
        if requested:
            patch["operationState"] = _operation("Failed", message, started, None)
            obj.body_patch(operation=None)
        if message != _condition_message(status, err.condition):
            obj.event(err.condition, message, warning=True)
        obj.patch_status(**patch)
        return

    automated = (spec.get("syncPolicy") or {}).get("automated")
    op = status.get("operationState") or {}
    new_revision = comparison.revision != (op.get("syncResult") or {}).get("revision")
    # A sync under way goes on (a wave's health, a hook), in sync already or not: its
    # PostSync hooks run once everything is applied.
    should_sync = bool(requested) or (op.get("phase") == "Running" and not new_revision)
    if not requested and automated is not None and not comparison.in_sync:
        if op.get("phase") == "Failed" and not new_revision:
            retry_at = parse_time(op.get("nextRetryAt"))  # None: retries exhausted
            should_sync = retry_at is not None and retry_at <= _now()
        else:
            # A new commit always syncs; drift of the same commit only with selfHeal.
            should_sync = (
                new_revision or bool(automated.get("selfHeal")) or op.get("phase") == "Running"
            )

    conditions: list[dict[str, Any]] = list(pin.conditions)
    if blocked is not None:
        kind, message = blocked
        # An explicit sync waits too (its operation stays): the order is what dependsOn is for.
        should_sync = False
        conditions.append(_condition(kind, message))
        if message != _condition_message(status, kind):
            obj.event(kind, message, warning=kind == dependencies.REFUSED)
    operation = op or None
    history = list(status.get("history") or [])
    keep = hist.limit(spec, settings.history_limit)
    if should_sync:
        prune = bool(requested and (requested.get("sync") or {}).get("prune")) or bool(
            automated and automated.get("prune")
        )
        try:
            phase, message = engine.sync(app, comparison, prune)
        except SyncError as err:
            phase, message = "Failed", str(err)
            conditions.append(_condition("SyncError", message))
            obj.event("SyncError", message, warning=True)
        operation = _operation(phase, message, started, comparison.revision)
        if comparison.hook_results:  # Argo's place for its hooks' runs
            operation["syncResult"]["resources"] = comparison.hook_results
        if phase == "Failed":
            operation.update(_retry(spec, op, new_revision))
        if phase in ("Succeeded", "Failed"):
            history = hist.record(
                history, comparison.revision, phase, spec["source"], cond.now(), keep
            )
        if phase == "Succeeded":
            obj.event("Synced", f"synced {comparison.revision[:8]}: {message}")
        if requested:
            obj.body_patch(operation=None)
    resources, worst, worst_message = _resources(engine, comparison, refreshed=should_sync)
    sync_status = SYNCED if comparison.in_sync else OUT_OF_SYNC
    if (operation or {}).get("phase") != "Running":
        # The health a finished sync left (a wave still waiting is not its outcome yet).
        history = hist.observe(history, comparison.revision, worst, cond.now())
    obj.patch_status(
        comparisonRetry=None,
        sync={"status": sync_status, "revision": comparison.revision},
        health={"status": worst, "message": worst_message},
        resources=resources,
        operationState=operation,
        history=history[-keep:],
        conditions=conditions,
        reconciledAt=started,
        observedGeneration=obj.generation,
        **pin.status,
    )


def _resources(
    engine: Engine, comparison: Comparison, refreshed: bool
) -> tuple[list[dict[str, Any]], str, str]:
    out: list[dict[str, Any]] = []
    worst, worst_message = health.HEALTHY, ""
    for item in comparison.items:
        status, message = (
            health.of(item.live)
            if item.live is not None or not refreshed
            else engine.health(item.key, comparison.user)
        )
        entry = {
            **item.key.as_status(),
            "status": SYNCED if item.in_sync else OUT_OF_SYNC,
            "health": {"status": status, **({"message": message} if message else {})},
        }
        out.append(entry)
        # The running worst, one comparison per object (the first object of the worst status
        # names it in the message).
        if health.worst([worst, status]) != worst:
            worst, worst_message = status, f"{item.key}: {message or status}"
    for key, _ in comparison.prune:
        out.append({**key.as_status(), "status": OUT_OF_SYNC, "requiresPruning": True})
    return out, worst, "" if worst == health.HEALTHY else worst_message


def _retry(spec: dict[str, Any], previous: dict[str, Any], new_revision: bool) -> dict[str, Any]:
    retry = (spec.get("syncPolicy") or {}).get("retry") or {}
    limit = int(retry.get("limit", 5))
    count = 0 if new_revision else int(previous.get("retryCount", 0)) + 1
    if count >= limit:
        return {"retryCount": count, "nextRetryAt": None}
    backoff = retry.get("backoff") or {}
    delay = min(
        seconds(backoff.get("duration"), 5) * int(backoff.get("factor", 2)) ** count,
        seconds(backoff.get("maxDuration"), 180),
    )
    at = (_now() + dt.timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"retryCount": count, "nextRetryAt": at}


COMPARISON_RETRIES = 8  # then the poll interval: a failure that lasts is not hammered


def _comparison_retry(status: dict[str, Any], transient: bool) -> dict[str, Any] | None:
    """When to compare again after a transient failure: 2, 4, 8, 16, then every 30 s, for
    COMPARISON_RETRIES tries (a cold start's clone race, a fetch or an API-server hiccup
    passes in seconds; its next poll may be an hour away)."""
    if not transient:
        return None
    count = int((status.get("comparisonRetry") or {}).get("count", 0)) + 1
    if count > COMPARISON_RETRIES:
        return {"count": count, "nextAt": None}
    delay = min(2.0**count, 30.0)
    at = (_now() + dt.timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"count": count, "nextAt": at}


def _operation(phase: str, message: str, started: str, revision: str | None) -> dict[str, Any]:
    return {
        "phase": phase,
        "message": message,
        "startedAt": started,
        "finishedAt": None if phase == "Running" else cond.now(),
        "syncResult": {"revision": revision} if revision else None,
    }


def _condition(type_: str, message: str) -> dict[str, Any]:
    return {"type": type_, "message": message, "lastTransitionTime": cond.now()}


def _kept(status: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [c for c in status.get("conditions") or [] if c.get("type") == type_]


def _condition_message(status: dict[str, Any], type_: str) -> str | None:
    return next(
        (c.get("message") for c in status.get("conditions") or [] if c.get("type") == type_), None
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
