"""Sync hooks, pure parts: which phase an object is a hook of (Argo's annotation, Helm's
mapped as Argo maps it), its delete policies, and whether a run of it is done.

A hook is not one of the Application's objects: it is created anew by each sync in its
phase (PreSync before anything is applied, Sync in its wave beside the objects, PostSync
once every object is Healthy, SyncFail when the sync failed), never compared, never pruned,
and never makes the Application OutOfSync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herd_operator.gitops import health
from herd_operator.gitops.plan import wave

HOOK = "argocd.argoproj.io/hook"
DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
HELM_HOOK = "helm.sh/hook"
HELM_WEIGHT = "helm.sh/hook-weight"
HELM_DELETE_POLICY = "helm.sh/hook-delete-policy"

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL, SKIP = "PreSync", "Sync", "PostSync", "SyncFail", "Skip"
PHASES = (PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL)
SUCCEEDED, FAILED, BEFORE_CREATION = "HookSucceeded", "HookFailed", "BeforeHookCreation"
POLICIES = (SUCCEEDED, FAILED, BEFORE_CREATION)
# Argo's mapping of Helm's hooks; install and upgrade alike, since a sync does not know which.
HELM_PHASES = {
    "pre-install": PRE_SYNC,
    "pre-upgrade": PRE_SYNC,
    "post-install": POST_SYNC,
    "post-upgrade": POST_SYNC,
}
HELM_POLICIES = {
    "before-hook-creation": BEFORE_CREATION,
    "hook-succeeded": SUCCEEDED,
    "hook-failed": FAILED,
}
UNSUPPORTED = (
    "PreDelete",
    "PostDelete",
    "pre-delete",
    "post-delete",
    "pre-rollback",
    "post-rollback",
)

RUNNING, DONE, BROKEN = "Running", "Succeeded", "Failed"


class HookError(Exception):
    """A hook annotation Herd cannot honour: the revision is refused, with this message."""


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _words(value: Any) -> list[str]:
    return [w.strip() for w in str(value).split(",") if w.strip()]


def phases(obj: dict[str, Any]) -> list[str] | None:
    """The phases `obj` is a hook of; None: an ordinary object; []: skipped (`Skip`, Helm's
    test hooks, Helm's crd-install is an ordinary object as in Argo)."""
    notes = _annotations(obj)
    meta = obj.get("metadata") or {}
    where = f"{obj.get('kind')} {meta.get('name') or meta.get('generateName')}"
    if HOOK in notes:
        out = []
        for word in _words(notes[HOOK]):
            if word == SKIP:
                return []
            if word in UNSUPPORTED:
                raise HookError(
                    f"{where}: hooks of phase {word} are not supported (Herd runs "
                    "PreSync, Sync, PostSync and SyncFail hooks)"
                )
            if word not in PHASES:
                raise HookError(f"{where}: unknown hook phase {word!r} in {HOOK}")
            out.append(word)
        return out or None
    if HELM_HOOK in notes:
        out = []
        for word in _words(notes[HELM_HOOK]):
            if word.startswith("test"):
                return []  # `helm test`'s, never part of an install (Argo skips them too)
            if word == "crd-install":
                return None
            if word in UNSUPPORTED:
                raise HookError(
                    f"{where}: Helm hooks {word} are not supported (Herd maps "
                    "pre-install/pre-upgrade to PreSync and post-install/post-upgrade to PostSync)"
                )
            if word not in HELM_PHASES:
                raise HookError(f"{where}: unknown Helm hook {word!r} in {HELM_HOOK}")
            if HELM_PHASES[word] not in out:
                out.append(HELM_PHASES[word])
        return out or None
    return None


def policies(obj: dict[str, Any]) -> set[str]:
    """Its delete policies; Argo's default when none is given: BeforeHookCreation."""
    notes = _annotations(obj)
    out: set[str] = set()
    for word in _words(notes.get(DELETE_POLICY, "")):
        if word not in POLICIES:
            raise HookError(f"unknown hook delete policy {word!r} in {DELETE_POLICY}")
        out.add(word)
    if DELETE_POLICY not in notes:
        for word in _words(notes.get(HELM_DELETE_POLICY, "")):
            if word not in HELM_POLICIES:
                raise HookError(f"unknown Helm hook delete policy {word!r}")
            out.add(HELM_POLICIES[word])
    return out or {BEFORE_CREATION}


def hook_wave(obj: dict[str, Any]) -> int:
    """Argo's sync-wave, else Helm's hook-weight (as Argo maps it)."""
    notes = _annotations(obj)
    if HELM_WEIGHT in notes and not any(k.endswith("/sync-wave") for k in notes):
        try:
            return int(notes[HELM_WEIGHT])
        except ValueError:
            return 0
    return wave(obj)


@dataclass
class Hook:
    phase: str
    obj: dict[str, Any]  # namespace set, marked as a hook of its Application
    wave: int
    policies: set[str]

    @property
    def named(self) -> bool:
        return bool(self.obj["metadata"].get("name"))

    @property
    def label(self) -> str:
        meta = self.obj["metadata"]
        return (
            f"{self.phase} hook {self.obj['kind']} {meta.get('name') or meta.get('generateName')}"
        )


def state(obj: dict[str, Any] | None) -> tuple[str, str]:
    """Whether a run of a hook is done: a Job Complete, a Pod Succeeded (Failed: the run
    failed); any other kind is done once it exists (Argo: once Healthy)."""
    if obj is None:
        return BROKEN, "deleted before it finished"
    status = obj.get("status") or {}
    kind = obj.get("kind")
    if kind == "Job":
        for cond in status.get("conditions") or []:
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "Failed":
                return BROKEN, str(cond.get("message") or cond.get("reason") or "job failed")
            if cond.get("type") == "Complete":
                return DONE, "job completed"
        return RUNNING, "job running"
    if kind == "Pod":
        phase = status.get("phase")
        if phase == "Succeeded":
            return DONE, "pod succeeded"
        if phase == "Failed":
            return BROKEN, str(status.get("message") or status.get("reason") or "pod failed")
        return RUNNING, f"pod {phase or 'Pending'}"
    verdict, message = health.of(obj)
    if verdict == health.DEGRADED:
        return BROKEN, message
    if verdict in (health.HEALTHY, health.SUSPENDED):
        return DONE, message or "created"
    return RUNNING, message or verdict
