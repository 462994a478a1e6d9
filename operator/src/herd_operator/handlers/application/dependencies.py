"""dependsOn (Herd's extension): an Application syncs only once each Application it depends
on is Synced and Healthy at its own current revision; a cycle is refused, naming it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herd_core import kube
from herd_operator.handlers.application.reconciler import PLURAL
from herd_operator.handlers.common import Object

WAITING = "WaitingForDependency"
REFUSED = "InvalidSpecError"
_MOST = 200  # Applications a cycle search reads at the most


def _deps(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    meta, spec = body["metadata"], body.get("spec") or {}
    return [
        (str(d.get("namespace") or meta["namespace"]), str(d["name"]))
        for d in spec.get("dependsOn") or []
        if isinstance(d, dict) and d.get("name")
    ]


def _id(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def not_ready(other: dict[str, Any]) -> str | None:
    """Why another Application is not yet Synced and Healthy at its own current revision."""
    meta, status = other["metadata"], other.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "it is being deleted"
    if status.get("observedGeneration") != meta.get("generation"):
        return "its current spec is not reconciled yet"
    if (status.get("operationState") or {}).get("phase") == "Running":
        return "its sync is running"
    sync = (status.get("sync") or {}).get("status")
    if sync != "Synced":
        return f"it is {sync or 'not compared yet'}"
    health = (status.get("health") or {}).get("status")
    if health != "Healthy":
        return f"it is {health or 'of unknown health'}"
    return None


def cycle(obj: Object) -> list[str] | None:
    """A dependsOn path from this Application back to itself, if there is one."""
    start = (obj.namespace, obj.name)
    path: list[tuple[str, str]] = [start]
    seen: set[tuple[str, str]] = set()

    def walk(body: Mapping[str, Any]) -> list[str] | None:
        for key in _deps(body):
            if key == start:
                return [_id(k) for k in [*path, start]]
            if key in seen or len(seen) >= _MOST:
                continue
            seen.add(key)
            found = kube.get_object(PLURAL, *key)
            if found is None:
                continue
            path.append(key)
            result = walk(found)
            path.pop()
            if result:
                return result
        return None

    return walk(obj.body)


def blocker(obj: Object) -> tuple[str, str] | None:
    """Why this Application may not sync yet, as (condition type, message); None if it may."""
    keys = _deps(obj.body)
    if not keys:
        return None
    found = cycle(obj)
    if found:
        return REFUSED, f"dependsOn makes a cycle: {' -> '.join(found)}"
    project = obj.spec.get("project")
    for key in keys:
        other = kube.get_object(PLURAL, *key)
        if other is None:
            return WAITING, f"waiting for Application {_id(key)}: it does not exist"
        theirs = (other.get("spec") or {}).get("project")
        if theirs != project:
            # Across Projects a Project would have to allow it; none can say so yet.
            return REFUSED, (
                f"dependsOn {_id(key)}: it is of Project {theirs}, not {project}; "
                "a dependency must be of the same Project"
            )
        why = not_ready(other)
        if why:
            return WAITING, f"waiting for Application {_id(key)}: {why}"
    return None
