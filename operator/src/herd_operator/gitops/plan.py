"""Pure parts of a sync: tracking ids, waves and their order, diffs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from herd_core.constants import GROUP, TRACKING_ANNOTATION

WAVE_ANNOTATIONS = ("argocd.argoproj.io/sync-wave", f"{GROUP}/sync-wave")
# Argo CD's kind order within a wave: what others depend on goes first.
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]
# Server-set fields that say nothing about whether git and the cluster agree.
_VOLATILE_META = (
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "uid",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class NotAllowed(Exception):
    pass


@dataclass(frozen=True)
class Key:
    """An object's identity: group, kind, namespace and name. The version is carried (to
    address the object) but is not part of the identity: an apiVersion bump of the same
    object in git updates it, never prunes it."""

    group: str
    version: str = field(compare=False)
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Key:
        group, _, version = obj["apiVersion"].rpartition("/")
        meta = obj["metadata"]
        return cls(group, version, obj["kind"], meta.get("namespace") or "", meta["name"])

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def as_status(self) -> dict[str, str]:
        return {
            "group": self.group,
            "version": self.version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }


def tracking_id(app_namespace: str, app_name: str, key: Key) -> str:
    """Argo's annotation format: <app>:<group>/<kind>:<namespace>/<name>."""
    return f"{app_namespace}_{app_name}:{key.group}/{key.kind}:{key.namespace}/{key.name}"


def tracked_by(obj: dict[str, Any] | None, app_namespace: str, app_name: str) -> bool:
    if obj is None:
        return False
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRACKING_ANNOTATION, "")
    return str(value).startswith(f"{app_namespace}_{app_name}:")


def wave(obj: dict[str, Any]) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for key in WAVE_ANNOTATIONS:
        if key in annotations:
            try:
                return int(annotations[key])
            except ValueError:
                return 0
    return 0


def order(objects: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Objects grouped into waves (ascending), each wave in Argo's kind order."""
    by_wave: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        by_wave.setdefault(wave(obj), []).append(obj)

    def kind_rank(obj: dict[str, Any]) -> tuple[int, str]:
        kind = obj["kind"]
        return (
            KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER),
            obj["metadata"]["name"],
        )

    return [sorted(by_wave[w], key=kind_rank) for w in sorted(by_wave)]


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what the server sets by itself (for comparing dry run and live)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_META}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    out["metadata"] = meta
    result: dict[str, Any] = _drop_none(out)
    return result


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def differs(desired_after_apply: dict[str, Any], live: dict[str, Any] | None) -> bool:
    return live is None or comparable(desired_after_apply) != comparable(live)


def changed_paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Where two objects differ, as dotted paths (for `herd app diff` and events)."""
    if isinstance(a, dict) and isinstance(b, dict):
        paths: list[str] = []
        for key in sorted(set(a) | set(b)):
            paths += changed_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return paths
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        paths = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            paths += changed_paths(x, y, f"{prefix}[{i}]")
        return paths
    return [] if a == b else [prefix or "."]
