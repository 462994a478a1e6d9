"""What git may put on the operator's disk, through the real parts (issue 31 N12): an operator
process of its own with a 1 MiB HERD_GIT_MAX_BYTES, a real bare repository (partial clones
allowed, as on GitHub), the API server. A path whose checkout passes the limit fails its
Application with a ComparisonError saying so, and the same process syncs the other paths of
the same repository; a checkout holds the Application's path, its value files and what its
symlinks point at, and the mirror the content of those only."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_operator.gitops.git import cache_key

from .applications import cm_data, configmap
from .helpers import Custom, OperatorProcess, same_process, sync_project, wait_for

PLURAL = "applications"
MiB = 1024 * 1024
CHART = {
    "charts/demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    "charts/demo/templates/cm.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n"
        'data:\n  greeting: {{ include "lib.greeting" . | quote }}\n'
        "  tag: {{ .Values.tag | quote }}\n"
    ),
    "charts/lib/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\ntype: library\n",
    "charts/lib/templates/_greeting.tpl": '{{- define "lib.greeting" -}}hi{{- end -}}\n',
    "apps/demo/values.yaml": "tag: v1\n",
    "apps/other/values.yaml": "tag: other\n",
    # 3 MiB of text: a few KiB in git, 3 MiB on disk once checked out.
    "huge/data.txt": "y" * (3 * MiB),  # not a manifest: only its size matters
    "huge/cm.yaml": configmap("huge", {}),
    "small/cm.yaml": configmap("small", {"k": "v"}),
}


@pytest.fixture
def own(
    api: ApiClient,
    make_namespace: Callable[[str], str],
    operator_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[tuple[OperatorProcess, str, str]]:
    """(operator, its namespace, its Project): a namespace outside the session operator's
    Application namespaces (t-*), watched only by an operator of its own."""
    namespace = make_namespace("gitcap")
    project = sync_project(api, namespace)
    proc = OperatorProcess(
        env={
            **operator_env,
            "HERD_GIT_MAX_BYTES": str(MiB),
            "HERD_WATCH_NAMESPACES": json.dumps([namespace]),
            "HERD_APPLICATION_NAMESPACES": json.dumps([namespace]),
            "HERD_WEBHOOK_PORT": "0",
            "HERD_METRICS_PORT": "0",
            "HERD_STATE_DIR": str(tmp_path / "state"),
            "HERD_AWS_NAME_PREFIX": f"{namespace}-",
        },
        log=tmp_path / "operator.log",
    ).start()
    try:
        yield proc, namespace, project
    finally:
        proc.stop()
        client.CustomObjectsApi(api).delete_cluster_custom_object(
            GROUP, VERSION, "projects", project
        )


def application(
    objects: Custom, project: str, name: str, repo: Repo, path: str, **helm: Any
) -> None:
    source: dict[str, Any] = {"repoURL": repo.url, "targetRevision": "dev", "path": path}
    if helm:
        source["helm"] = helm
    objects.create(
        "Application",
        PLURAL,
        name,
        {
            "project": project,
            "source": source,
            "destination": {"namespace": objects.namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    )


def condition(objects: Custom, name: str) -> str:
    status: dict[str, Any] = objects.get(PLURAL, name).get("status") or {}
    conds = status.get("conditions") or []
    return next((c["message"] for c in conds if c["type"] == "ComparisonError"), "")


def synced_at(objects: Custom, name: str, sha: str) -> None:
    def ok() -> bool:
        sync = (objects.get(PLURAL, name).get("status") or {}).get("sync") or {}
        return sync.get("status") == "Synced" and sync.get("revision") == sha

    wait_for(ok, 60, f"Application {name} Synced at {sha[:8]}")


def test_a_checkout_past_the_limit_fails_its_application_not_the_operator(
    api: ApiClient, tmp_path: Path, own: tuple[OperatorProcess, str, str]
) -> None:
    operator, namespace, project = own
    same_operator = same_process(operator)
    objects = Custom(api, namespace)
    repo = Repo.create(tmp_path / "repo", {"README.md": "# a monorepo\n"})
    (repo.work / "charts" / "demo" / "charts").mkdir(parents=True)
    (repo.work / "charts" / "demo" / "charts" / "lib").symlink_to("../../lib")
    sha = repo.commit("dev", "a chart, a huge folder", CHART)
    # Random bytes: as large in git as on disk, so what the partial clone fetches passes the
    # limit before a file is written.
    (repo.work / "random").mkdir()
    (repo.work / "random" / "r.bin").write_bytes(os.urandom(2 * MiB))
    (repo.work / "random" / "cm.yaml").write_text(configmap("random", {}))
    sha = repo.commit("dev", "random bytes", {})

    # random alone first: once four path sets of the commit are asked for, the whole tree is
    # tried, and its fetch may bring random's content into the mirror before random's own
    # checkout, which then stops on what it writes instead (refused too, in other words).
    application(objects, project, "random", repo, "random")
    random = wait_for(lambda: condition(objects, "random"), 60, "random refused")
    assert f"the content fetched for the checkout of random at {sha[:12]}" in random
    application(objects, project, "huge", repo, "huge")
    application(
        objects, project, "chart", repo, "charts/demo", valueFiles=["../../apps/demo/values.yaml"]
    )
    application(objects, project, "small", repo, "small")
    huge = wait_for(lambda: condition(objects, "huge"), 60, "huge refused")
    assert f"the checkout of huge at {sha[:12]} is larger than the limit of 1 MiB" in huge
    assert "HERD_GIT_MAX_BYTES" in huge
    # The same process syncs the other paths of the same repository meanwhile.
    synced_at(objects, "chart", sha)
    synced_at(objects, "small", sha)
    assert cm_data(api, namespace, "demo") == {"greeting": "hi", "tag": "v1"}
    assert cm_data(api, namespace, "small") == {"k": "v"}
    assert cm_data(api, namespace, "huge") is None and cm_data(api, namespace, "random") is None
    assert same_operator()

    # The chart's checkout: its folder, its value file and the library its symlink names.
    root = tmp_path / "state" / "git"
    trees = [t for t in (root / "trees" / cache_key(repo.url, None)).iterdir()]
    chart = next(t for t in trees if (t / "charts" / "demo").is_dir())
    files = sorted(
        str(p.relative_to(chart)) for p in chart.rglob("*") if p.is_symlink() or not p.is_dir()
    )
    assert files == [
        "apps/demo/values.yaml",
        "charts/demo/Chart.yaml",
        "charts/demo/charts/lib",
        "charts/demo/templates/cm.yaml",
        "charts/lib/Chart.yaml",
        "charts/lib/templates/_greeting.tpl",
    ]
    assert not any((t / "huge" / "data.txt").exists() for t in trees)

    # A commit that makes the folder small again syncs, by the same process.
    fixed = repo.commit("dev", "smaller", {"huge/data.txt": "y"})
    synced_at(objects, "huge", fixed)
    assert cm_data(api, namespace, "huge") == {}
    assert condition(objects, "huge") == ""
    assert same_operator()
