"""Hostile git content through the real parts (issue 31): a repository holding ~120 KB of
nested `[` (a SIGSEGV of libyaml's composer, so of the whole operator, before) fails only its
own Application, with a ComparisonError naming the file, while the same operator process goes
on syncing another Application, and the next good commit of the hostile one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo

from .helpers import Custom, OperatorProcess, sync_project, wait_for

pytestmark = pytest.mark.usefixtures("project")
PLURAL = "applications"
DEEP = "[" * 60_000 + "]" * 60_000  # 120 KB; before the fix the operator died of SIGSEGV


@pytest.fixture
def project(api: ApiClient, namespace: str) -> Iterator[str]:
    """The test namespace's Project: its Applications act as ServiceAccount `sync` there."""
    name = sync_project(api, namespace)
    yield name
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, "projects", name)


def configmap(name: str, data: dict[str, str]) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


def application(objects: Custom, name: str, repo: Repo, path: str, namespace: str) -> None:
    objects.create(
        "Application",
        PLURAL,
        name,
        {
            "project": f"p-{objects.namespace}",
            "source": {"repoURL": repo.url, "targetRevision": "dev", "path": path},
            "destination": {"namespace": namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    )


def status(objects: Custom, name: str) -> dict[str, Any]:
    return dict(objects.get(PLURAL, name).get("status") or {})


def comparison_error(objects: Custom, name: str) -> str | None:
    conds = status(objects, name).get("conditions") or []
    return next((c["message"] for c in conds if c["type"] == "ComparisonError"), None)


def synced_at(objects: Custom, name: str, sha: str) -> dict[str, Any]:
    def ok() -> dict[str, Any]:
        st = status(objects, name)
        sync = st.get("sync") or {}
        return st if sync.get("status") == "Synced" and sync.get("revision") == sha else {}

    return wait_for(ok, 60, f"Application {name} Synced at {sha[:8]}")


def cm_data(api: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    try:
        return dict(client.CoreV1Api(api).read_namespaced_config_map(name, namespace).data or {})
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def test_nested_brackets_fail_their_application_not_the_operator(
    objects: Custom,
    api: ApiClient,
    namespace: str,
    tmp_path: Path,
    live_operator: OperatorProcess,
) -> None:
    popen = live_operator.popen
    assert popen is not None
    pid = popen.pid
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    repo.commit(
        "dev",
        "hostile and good",
        {
            "hostile/ok.yaml": configmap("hostile-ok", {"k": "v"}),
            "hostile/deep.yaml": DEEP,
            "good/a.yaml": configmap("good", {"k": "one"}),
        },
    )
    application(objects, "hostile", repo, "hostile", namespace)
    message = wait_for(lambda: comparison_error(objects, "hostile") or "", 60, "ComparisonError")
    assert "deep.yaml" in message and "nested deeper than 100 levels" in message, message
    # Nothing of the hostile revision is applied, and the operator process is the same one.
    assert cm_data(api, namespace, "hostile-ok") is None
    assert live_operator.running() and popen.pid == pid and popen.poll() is None

    # A good Application of the same repository syncs, by the same operator, after it.
    application(objects, "good", repo, "good", namespace)
    synced_at(objects, "good", repo.head("dev"))
    assert cm_data(api, namespace, "good") == {"k": "one"}
    # The hostile one is still refused (from the remembered failure, the same message)...
    assert comparison_error(objects, "hostile") == message
    # ...until a commit without the file: a new revision is rendered again.
    fixed = repo.commit("dev", "drop the hostile file", {"hostile/deep.yaml": "# gone\n"})
    synced_at(objects, "hostile", fixed)
    assert cm_data(api, namespace, "hostile-ok") == {"k": "v"}
    assert comparison_error(objects, "hostile") is None
    assert live_operator.running() and popen.pid == pid and popen.poll() is None
