"""Health of live objects, as Argo CD judges it; an Application takes the worst."""

from __future__ import annotations

from typing import Any

HEALTHY, SUSPENDED, PROGRESSING = "Healthy", "Suspended", "Progressing"
MISSING, DEGRADED, UNKNOWN = "Missing", "Degraded", "Unknown"
_ORDER = [HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN]


def worst(statuses: list[str]) -> str:
    return max(statuses, key=_ORDER.index) if statuses else HEALTHY


def of(obj: dict[str, Any] | None) -> tuple[str, str]:
    """(status, message) of one live object; None means it does not exist."""
    if obj is None:
        return MISSING, "not in the cluster"
    kind = obj.get("kind")
    status = obj.get("status") or {}
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    generation_seen = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    if kind == "Deployment":
        if spec.get("paused"):
            return SUSPENDED, "paused"
        want = spec.get("replicas", 1)
        if not generation_seen:
            return PROGRESSING, "waiting for the rollout to be observed"
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                return DEGRADED, cond.get("message", "progress deadline exceeded")
        if status.get("updatedReplicas", 0) < want:
            return PROGRESSING, f"{status.get('updatedReplicas', 0)} of {want} updated"
        if status.get("availableReplicas", 0) < want:
            return PROGRESSING, f"{status.get('availableReplicas', 0)} of {want} available"
        return HEALTHY, ""
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if not generation_seen:
            return PROGRESSING, "waiting for the rollout to be observed"
        if status.get("readyReplicas", 0) < want:
            return PROGRESSING, f"{status.get('readyReplicas', 0)} of {want} ready"
        if status.get("updateRevision") and status.get("currentRevision") != status.get(
            "updateRevision"
        ):
            return PROGRESSING, "rolling update in progress"
        return HEALTHY, ""
    if kind == "DaemonSet":
        if not generation_seen:
            return PROGRESSING, "waiting for the rollout to be observed"
        want = status.get("desiredNumberScheduled", 0)
        if (
            status.get("updatedNumberScheduled", 0) < want
            or status.get("numberAvailable", 0) < want
        ):
            return PROGRESSING, f"{status.get('numberAvailable', 0)} of {want} available"
        return HEALTHY, ""
    if kind == "Job":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                return DEGRADED, cond.get("message", "job failed")
            if cond.get("type") == "Complete" and cond.get("status") == "True":
                return HEALTHY, ""
        if spec.get("suspend"):
            return SUSPENDED, "suspended"
        return PROGRESSING, "running"
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase")
        if phase == "Bound":
            return HEALTHY, ""
        if phase == "Lost":
            return DEGRADED, "volume lost"
        return PROGRESSING, f"phase {phase or 'Pending'}"
    if kind == "Service":
        if spec.get("type") == "LoadBalancer" and not (status.get("loadBalancer") or {}).get(
            "ingress"
        ):
            return PROGRESSING, "waiting for the load balancer"
        return HEALTHY, ""
    if kind == "Ingress":
        if not (status.get("loadBalancer") or {}).get("ingress"):
            return PROGRESSING, "waiting for the load balancer"
        return HEALTHY, ""
    if kind == "Application":
        app_health = (status.get("health") or {}).get("status")
        return (app_health or PROGRESSING), (status.get("health") or {}).get("message", "")
    for cond in status.get("conditions") or []:
        # Any custom resource with a Ready condition, our own kinds included.
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return HEALTHY, ""
            reason = cond.get("reason") or ""
            if reason in ("InvalidSpec", "AlreadyExists", "Failed") or "Error" in reason:
                return DEGRADED, cond.get("message", reason)
            return PROGRESSING, cond.get("message", reason)
    return HEALTHY, ""
