"""Health of live objects, as Argo CD judges it; an Application takes the worst.

Built-in kinds are judged here; common custom resources by a check of their own (CHECKS,
by API group and kind, after Argo's resource_customizations: Argo Rollouts, cert-manager).
Any other kind is Healthy once applied, as in Argo, but never when its own status says it
failed (a Ready condition that is False for a failure, a phase Failed).
"""

from __future__ import annotations

from collections.abc import Callable
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
    generation_seen = _int(status.get("observedGeneration")) >= _int(meta.get("generation"))
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
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    check = CHECKS.get((group, str(kind)))
    if check is not None:
        return check(obj)
    for cond in status.get("conditions") or []:
        # Any custom resource with a Ready condition, our own kinds included.
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return HEALTHY, ""
            reason = cond.get("reason") or ""
            if reason in ("InvalidSpec", "AlreadyExists", "Failed") or "Error" in reason:
                return DEGRADED, cond.get("message", reason)
            return PROGRESSING, cond.get("message", reason)
    if str(status.get("phase") or "") in ("Failed", "Error", "Degraded"):
        return DEGRADED, str(status.get("message") or f"phase {status['phase']}")
    return HEALTHY, ""


Check = Callable[[dict[str, Any]], tuple[str, str]]


def _int(value: Any) -> int:
    """A count from a status someone else wrote: what is not a number counts as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def application(obj: dict[str, Any]) -> tuple[str, str]:
    """A child Application (app of apps): its own health, but an error that keeps it from
    syncing (a source that does not render, a refused Project, a failed sync) is the
    parent's error too, never a wait."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if str(cond.get("type", "")).endswith("Error"):
            return DEGRADED, f"{cond['type']}: {cond.get('message', '')}"
    if (status.get("operationState") or {}).get("phase") in ("Failed", "Error"):
        return DEGRADED, str(status["operationState"].get("message") or "sync failed")
    health = status.get("health") or {}
    return str(health.get("status") or PROGRESSING), str(health.get("message") or "")


def rollout(obj: dict[str, Any]) -> tuple[str, str]:
    """An Argo Rollout, as Argo's own check: until its controller has seen this generation
    it is Progressing (with no controller at all, for ever: never Healthy)."""
    status, meta, spec = obj.get("status") or {}, obj.get("metadata") or {}, obj.get("spec") or {}
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return PROGRESSING, "waiting for the rollout's controller to observe it"
    phase = str(status.get("phase") or "")
    if phase == "Degraded" or status.get("abort"):
        return DEGRADED, str(status.get("message") or "rollout aborted")
    if spec.get("paused") or phase == "Paused":
        return SUSPENDED, str(status.get("message") or "paused")
    if phase == "Healthy":
        return HEALTHY, ""
    return PROGRESSING, str(status.get("message") or f"phase {phase or 'unknown'}")


def certificate(obj: dict[str, Any]) -> tuple[str, str]:
    """A cert-manager Certificate: Ready, or why not."""
    conds = _conditions(obj)
    ready, issuing = conds.get("Ready"), conds.get("Issuing")
    if issuing is not None and issuing.get("status") == "True":
        return PROGRESSING, str(issuing.get("message") or "issuing")
    if ready is None:
        return PROGRESSING, "waiting for the certificate"
    if ready.get("status") == "True":
        return HEALTHY, str(ready.get("message") or "")
    return DEGRADED, str(ready.get("message") or ready.get("reason") or "not ready")


def issuer(obj: dict[str, Any]) -> tuple[str, str]:
    """A cert-manager Issuer or ClusterIssuer."""
    ready = _conditions(obj).get("Ready")
    if ready is None:
        return PROGRESSING, "initializing the issuer"
    if ready.get("status") == "True":
        return HEALTHY, str(ready.get("message") or "")
    return DEGRADED, str(ready.get("message") or ready.get("reason") or "not ready")


def pod(obj: dict[str, Any]) -> tuple[str, str]:
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return HEALTHY, ""
    if phase == "Failed":
        return DEGRADED, str(status.get("message") or "pod failed")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"):
            return DEGRADED, f"{container.get('name')}: {waiting['reason']}"
    if phase == "Running" and _conditions(obj).get("Ready", {}).get("status") == "True":
        return HEALTHY, ""
    return PROGRESSING, f"phase {phase or 'Pending'}"


# By (API group, kind). A new check: a function of the live object, added here.
CHECKS: dict[tuple[str, str], Check] = {
    ("platform.herd-itt.com", "Application"): application,
    ("argoproj.io", "Application"): application,
    ("argoproj.io", "Rollout"): rollout,
    ("cert-manager.io", "Certificate"): certificate,
    ("cert-manager.io", "Issuer"): issuer,
    ("cert-manager.io", "ClusterIssuer"): issuer,
    ("", "Pod"): pod,
}
