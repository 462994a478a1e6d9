"""Pure parts of a sync: tracking ids, waves and their order, diffs."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from herd_core.constants import GROUP, TRACKING_ANNOTATION, TRACKING_LABEL

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


# -- ignoreDifferences ------------------------------------------------------------------------
def ignored_pointers(
    rules: list[dict[str, Any]], key: Key, live: dict[str, Any] | None
) -> tuple[str, ...]:
    """The JSON pointers Argo's `ignoreDifferences` rules ignore on `key`'s object: their
    jsonPointers, and what their managedFieldsManagers own of the live object."""
    out: list[str] = []
    for rule in matching(rules, key):
        out += [str(p) for p in rule.get("jsonPointers") or []]
        managers = set(rule.get("managedFieldsManagers") or [])
        for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
            if entry.get("manager") in managers:
                out += _owned(entry.get("fieldsV1") or {}, "")
    return tuple(dict.fromkeys(out))


def matching(rules: list[dict[str, Any]], key: Key) -> list[dict[str, Any]]:
    """The rules of `ignoreDifferences` that name `key`'s object (group and kind, and its
    name and namespace where they say)."""
    return [
        rule
        for rule in rules
        if rule.get("kind") == key.kind
        and (rule.get("group") or "") == key.group
        and rule.get("name") in (None, "", key.name)
        and rule.get("namespace") in (None, "", key.namespace)
    ]


def _owned(fields: dict[str, Any], prefix: str) -> list[str]:
    """JSON pointers of what a managedFields entry (fieldsV1) owns: its `f:` fields; where
    it owns items of a list (`k:`, `v:`, `i:`) the whole list (coarser, never less)."""
    out: list[str] = []
    for name, sub in fields.items():
        if name.startswith("f:"):
            part = name[2:].replace("~", "~0").replace("/", "~1")
            out += _owned(sub or {}, f"{prefix}/{part}") or [f"{prefix}/{part}"]
        elif name != "." and prefix:
            return [prefix]
    return out


def _split(pointer: str) -> list[str]:
    if pointer in ("", "/"):
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]


def _order(parts: list[str]) -> list[tuple[int, int, str]]:
    """Pointers in document order, list indexes as numbers (10 after 9)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _walk(obj: Any, parts: list[str]) -> tuple[Any, str | int] | None:
    """The container of the pointed value and its key in it, or None when absent."""
    node = obj
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if part not in node:
                return None
            if last:
                return node, part
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                return node, int(part)
            node = node[int(part)]
        else:
            return None
    return None


def without(obj: dict[str, Any] | None, pointers: Iterable[str]) -> dict[str, Any] | None:
    """`obj` without what `pointers` point at (a copy; for comparing)."""
    if obj is None or not pointers:
        return obj
    out = copy.deepcopy(obj)
    # The last first: removing a list's item moves those after it.
    for parts in sorted((_split(p) for p in pointers), key=_order, reverse=True):
        found = _walk(out, parts) if parts else None
        if found is not None:
            del found[0][found[1]]
    return out


# Never taken from the live object: what names the object and marks it as ours (else a
# rule could keep another Application's mark on what this one writes).
_OURS = (
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "annotations", TRACKING_ANNOTATION),
    ("metadata", "labels", TRACKING_LABEL),
)


def respecting(
    desired: dict[str, Any], live: dict[str, Any], pointers: Iterable[str]
) -> dict[str, Any]:
    """`desired` with the live values at `pointers` (RespectIgnoreDifferences): a sync
    leaves them as they are; absent in the live object, absent in what is applied."""
    out = copy.deepcopy(desired)
    for parts in sorted((_split(p) for p in pointers), key=_order, reverse=True):
        if not parts or any(path[: len(parts)] == tuple(parts) for path in _OURS):
            continue
        there = _walk(live, parts)
        here = _walk(out, parts)
        if there is None:
            if here is not None:
                del here[0][here[1]]
            continue
        value = copy.deepcopy(there[0][there[1]])
        if here is not None:
            here[0][here[1]] = value
            continue
        node: Any = out  # create the path down to it (maps only)
        for part in parts[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        else:
            if isinstance(node, dict):
                node[parts[-1]] = value
    return out
