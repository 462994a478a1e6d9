"""Application test helpers: manifests for a test repository, an Application of the test
namespace's Project (fixtures `project` and `gitrepo` in conftest.py), its status and the
waits on it, and the ConfigMaps a sync leaves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from herd_devkit.local.gitrepo import Repo

from .helpers import Custom, read_or_none, wait_for

PLURAL = "applications"
SOURCE_KINDS = ("helm", "kustomize", "directory")  # keywords of application() for its source


def configmap(
    name: str,
    data: dict[str, str],
    namespace: str = "",
    wave: int | None = None,
) -> str:
    """A ConfigMap as a manifest file (JSON, one line); `wave`: its sync wave."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if wave is not None:
        meta["annotations"] = {"argocd.argoproj.io/sync-wave": str(wave)}
    return (
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}) + "\n"
    )


def application(
    objects: Custom,
    name: str,
    repo: Repo,
    path: str,
    namespace: str,
    *,
    branch: str = "dev",
    prune: bool = True,
    self_heal: bool = True,
    automated: Mapping[str, Any] | None = None,
    poll: str | None = None,
    project: str | None = None,
    **extra: Any,
) -> None:
    """An Application of the test namespace's Project; polled at the operator's interval
    (2s in tests: below the 10s an Application may ask for). `helm`, `kustomize` and
    `directory` go to its source, `automated` into its automated sync policy, any other
    keyword to its spec."""
    source: dict[str, Any] = {"repoURL": repo.url, "targetRevision": branch, "path": path}
    for kind in SOURCE_KINDS:
        if kind in extra:
            source[kind] = extra.pop(kind)
    spec: dict[str, Any] = {
        "project": project or f"p-{objects.namespace}",
        "source": source,
        "destination": {"namespace": namespace},
        "syncPolicy": {"automated": {"prune": prune, "selfHeal": self_heal, **(automated or {})}},
        **({"pollInterval": poll} if poll else {}),
        **extra,
    }
    objects.create("Application", PLURAL, name, spec)


def app_status(objects: Custom, name: str) -> dict[str, Any]:
    return dict(objects.get(PLURAL, name).get("status") or {})


def comparison_error(objects: Custom, name: str) -> str | None:
    """The message of the Application's ComparisonError condition; None without one."""
    conds = app_status(objects, name).get("conditions") or []
    return next((c["message"] for c in conds if c["type"] == "ComparisonError"), None)


def synced_at(objects: Custom, name: str, sha: str, timeout: float = 60) -> dict[str, Any]:
    """The Application's status once it is Synced at `sha`."""

    def ok() -> dict[str, Any] | None:
        st = app_status(objects, name)
        if (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get("revision") == sha:
            return st
        return None

    return wait_for(ok, timeout, f"Application {name} Synced at {sha[:8]}")


def cm(api: ApiClient, namespace: str, name: str) -> Any:
    """The live ConfigMap (a V1ConfigMap), None if there is none."""
    return read_or_none(client.CoreV1Api(api).read_namespaced_config_map, name, namespace)


def cm_data(api: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    """The live ConfigMap's data, None if there is none."""
    live = cm(api, namespace, name)
    return None if live is None else dict(live.data or {})
