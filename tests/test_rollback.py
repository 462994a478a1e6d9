"""History and rollback through git (issue 35), through the real parts: real bare
repositories (a pre-receive hook protects a branch), the operator process, the API server with
its Deployment controller, and `herd app history|rollback` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo, git

from .applications import PLURAL, app_status, application, cm_data, configmap
from .conftest import Cluster
from .helpers import Custom, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")
HERD = str(Path(sys.executable).parent / "herd")


def herd(cluster: Cluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A state folder of its own: no `make up` env (its clusters, its URL rewrites) leaks in.
    env = {**os.environ, "HERD_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    return subprocess.run(
        [HERD, *args, "--kubeconfig", str(cluster.kubeconfig)],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


def deployment(replicas: int, ready: bool = True, version: str = "1") -> str:
    """A Deployment; not `ready`: its pod can never be scheduled (no node has the label) and
    its progress deadline is 2 s, so the Deployment controller calls it failed: Degraded.
    Each `version` is a template of its own (a template seen before is no new rollout: its
    progress deadline does not run again)."""
    labels = {"app": "web"}
    pod: dict[str, Any] = {
        "containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}],
    }
    if not ready:
        pod["nodeSelector"] = {"herd-test/no-such-node": "true"}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "progressDeadlineSeconds": 2,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": {"version": version}},
                    "spec": pod,
                },
            },
        }
    )


def settled(
    objects: Custom, name: str, sha: str, health: str, timeout: float = 60, synced: bool = True
) -> Any:
    """The Application Synced at `sha` and of that health, with the last history entry's
    healthAfter saying the same (unless not `synced`: a commit the cluster runs already
    needs no sync, and history records syncs)."""

    def ok() -> dict[str, Any] | None:
        st = app_status(objects, name)
        last = (st.get("history") or [{}])[-1]
        if (
            (st.get("sync") or {}).get("status") == "Synced"
            and st["sync"].get("revision") == sha
            and (st.get("health") or {}).get("status") == health
            and (not synced or (last.get("revision") == sha and last.get("healthAfter") == health))
        ):
            return st
        return None

    return wait_for(ok, timeout, f"Application {name} Synced at {sha[:8]} and {health}")


def tree(repo: Repo, rev: str, path: str) -> str:
    return git("rev-parse", f"{rev}:{path}", cwd=repo.origin)


def protect(repo: Repo, *refs: str) -> None:
    """A pre-receive hook that refuses pushes to `refs` (all refs when none), as a host's
    branch protection does."""
    hook = repo.origin / "hooks" / "pre-receive"
    match = " ".join(refs)
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f"  for protected in {match or '$ref'}; do\n"
        '    if [ "$ref" = "$protected" ]; then\n'
        '      echo "$ref is protected: changes go through review" >&2; exit 1\n'
        "    fi\n"
        "  done\n"
        "done\n"
    )
    hook.chmod(0o755)


def test_rollback_writes_a_revert_commit_and_the_cluster_follows(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    """v1 Healthy; v2 comes by a real merge, v3 also changes a file outside the app's path.
    `herd app rollback` (no revision: the last Healthy one other than the head) pushes one
    commit on top of the head whose app path is v1's tree, the rest untouched, history not
    rewritten; automated sync, still on, brings the cluster back; history lists them all."""
    v1 = gitrepo.commit("dev", "v1", {"m/cm.yaml": configmap("a", {"v": "1"})})
    application(objects, "roll", gitrepo, "m", namespace)
    settled(objects, "roll", v1, "Healthy")

    gitrepo.merge("dev", "main")
    gitrepo.commit("main", "v2 on main", {"m/cm.yaml": configmap("a", {"v": "2"})})
    v2 = gitrepo.merge("main", "dev")
    settled(objects, "roll", v2, "Healthy")
    v3 = gitrepo.commit(
        "dev",
        "v3",
        {"m/cm.yaml": configmap("a", {"v": "3"}), "m/b.yaml": configmap("b", {}), "NOTES": "3"},
    )
    settled(objects, "roll", v3, "Healthy")
    assert cm_data(api, namespace, "b") == {}

    out = herd(cluster, tmp_path, "app", "rollback", "roll", v1[:10], "-n", namespace)
    assert out.returncode == 0, out.stdout + out.stderr
    head = gitrepo.head("dev")
    assert git("rev-parse", f"{head}^", cwd=gitrepo.origin) == v3  # on top: nothing rewritten
    assert tree(gitrepo, head, "m") == tree(gitrepo, v1, "m")
    assert git("show", f"{head}:NOTES", cwd=gitrepo.origin) == "3"  # outside the path: kept
    assert f"Synced at {head[:8]}" in out.stdout and "Succeeded" in out.stdout, out.stdout
    st = settled(objects, "roll", head, "Healthy")
    assert cm_data(api, namespace, "a") == {"v": "1"}
    assert cm_data(api, namespace, "b") is None  # pruned: v1 had no b
    spec = objects.get(PLURAL, "roll")["spec"]
    assert spec["syncPolicy"]["automated"]["selfHeal"] is True  # automated sync stays on

    assert [h["revision"] for h in st["history"]] == [v1, v2, v3, head]
    assert all(h["result"] == "Succeeded" for h in st["history"])
    assert [h["id"] for h in st["history"]] == [0, 1, 2, 3]
    assert all(h["source"]["targetRevision"] == "dev" for h in st["history"])  # Argo's fields
    listed = herd(cluster, tmp_path, "app", "history", "roll", "-n", namespace)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = [
        line
        for line in listed.stdout.splitlines()
        if any(r[:8] in line for r in (v1, v2, v3, head))
    ]
    assert len(lines) == 4, listed.stdout
    assert head[:8] in lines[0] and "current" in lines[0]  # newest first
    assert all("Succeeded" in line and "Healthy" in line for line in lines), listed.stdout

    # With nothing to go back to that differs, the command says so and pushes nothing.
    again = herd(cluster, tmp_path, "app", "rollback", "roll", v1, "-n", namespace)
    assert again.returncode == 0 and "nothing to revert" in again.stdout, again.stdout
    assert gitrepo.head("dev") == head


def test_revision_history_limit_keeps_the_newest(
    objects: Custom, gitrepo: Repo, namespace: str
) -> None:
    shas = [gitrepo.commit("dev", "v0", {"m/cm.yaml": configmap("a", {"v": "0"})})]
    application(
        objects,
        "short",
        gitrepo,
        "m",
        namespace,
        syncPolicy={"automated": {"prune": True}},
        revisionHistoryLimit=2,
    )
    settled(objects, "short", shas[0], "Healthy")
    for n in (1, 2):
        shas.append(gitrepo.commit("dev", f"v{n}", {"m/cm.yaml": configmap("a", {"v": str(n)})}))
        st = settled(objects, "short", shas[-1], "Healthy")
    assert [h["revision"] for h in st["history"]] == shas[1:]
    assert [h["id"] for h in st["history"]] == [1, 2]  # ids go on counting


def test_a_protected_branch_gets_a_change_to_review_and_the_cluster_stays(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    """dev refuses pushes (a pre-receive hook): the revert goes to a branch of its own with
    the command that opens it for review, and nothing changes in the cluster. With --protected
    and a host that takes no push at all, the commit stays in a local clone."""
    v1 = gitrepo.commit("dev", "v1", {"m/cm.yaml": configmap("a", {"v": "1"})})
    application(objects, "prot", gitrepo, "m", namespace)
    settled(objects, "prot", v1, "Healthy")
    v2 = gitrepo.commit("dev", "v2", {"m/cm.yaml": configmap("a", {"v": "2"})})
    settled(objects, "prot", v2, "Healthy")
    protect(gitrepo, "refs/heads/dev")

    out = herd(cluster, tmp_path, "app", "rollback", "prot", "-n", namespace)  # default: v1
    assert out.returncode == 0, out.stdout + out.stderr
    assert "refs/heads/dev is protected" in out.stdout, out.stdout
    branches = git(
        "for-each-ref", "--format=%(refname:short)", "refs/heads/herd", cwd=gitrepo.origin
    )
    assert len(branches.split()) == 1 and branches.startswith("herd/rollback-prot-"), branches
    review = branches.strip()
    assert f"gh pr create --base dev --head {review}" in out.stdout, out.stdout
    assert tree(gitrepo, review, "m") == tree(gitrepo, v1, "m")
    assert git("rev-parse", f"{review}^", cwd=gitrepo.origin) == v2
    assert gitrepo.head("dev") == v2
    assert "nothing changed in the cluster" in out.stdout
    # The operator compared again since (a refresh) and stays at v2: nothing moved.
    before = app_status(objects, "prot")["reconciledAt"]
    objects.api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "prot",
        {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "now-" + before}}},
    )
    wait_for(lambda: app_status(objects, "prot")["reconciledAt"] != before, 30, "a new compare")
    assert app_status(objects, "prot")["sync"]["revision"] == v2
    assert cm_data(api, namespace, "a") == {"v": "2"}

    protect(gitrepo)  # no push at all now
    kept = herd(cluster, tmp_path, "app", "rollback", "prot", v1, "-n", namespace, "--protected")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "dev is protected" in kept.stdout and "left in" in kept.stdout, kept.stdout
    clone = Path(kept.stdout.split("left in ", 1)[1].split(" as branch", 1)[0])
    assert tree(gitrepo, v1, "m") == git("rev-parse", "HEAD:m", cwd=clone)
    assert gitrepo.head("dev") == v2


def test_auto_rollback_pins_the_last_healthy_revision_until_a_new_commit(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    """A commit whose Deployment never becomes ready (ProgressDeadlineExceeded): Degraded
    for 5 s, the Application pins itself to the last Healthy revision (status, condition
    RolledBack, Event) and syncs it, while dev's head stays at the bad commit; a fix on dev
    lifts the pin and is synced. Bad again, a revert by `herd app rollback` lifts it too."""
    good = gitrepo.commit(
        "dev", "good", {"m/web.yaml": deployment(0), "m/cm.yaml": configmap("a", {"v": "good"})}
    )
    rollback = {"onDegraded": True, "after": "5s"}
    application(objects, "auto", gitrepo, "m", namespace, automated={"rollback": rollback})
    settled(objects, "auto", good, "Healthy")

    bad = gitrepo.commit(
        "dev",
        "bad",
        {"m/web.yaml": deployment(1, ready=False), "m/cm.yaml": configmap("a", {"v": "bad"})},
    )

    def pinned() -> dict[str, Any] | None:
        st = app_status(objects, "auto")
        return st if st.get("pinnedRevision") else None

    st = wait_for(pinned, 90, "the Application pinned")
    assert st["pinnedRevision"] == good and st["pinnedFrom"] == bad
    entry = next(h for h in st["history"] if h["revision"] == bad)
    assert entry["healthAfter"] == "Degraded"
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert bad[:8] in rolled["message"] and good[:8] in rolled["message"], rolled
    assert "Degraded" in rolled["message"]
    st = settled(objects, "auto", good, "Healthy")
    assert gitrepo.head("dev") == bad  # git was not touched: the pin holds the cluster back
    assert cm_data(api, namespace, "a") == {"v": "good"}
    assert st["pinnedRevision"] == good
    events = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=auto")
        .items
    )
    assert any(e.reason == "RolledBack" and bad[:8] in e.message for e in events)
    listed = herd(cluster, tmp_path, "app", "history", "auto", "-n", namespace)
    assert f"pinned at {good[:8]}" in listed.stdout, listed.stdout
    assert "Degraded" in listed.stdout and "rolled back from" in listed.stdout, listed.stdout

    fix = gitrepo.commit(
        "dev", "fix", {"m/web.yaml": deployment(0), "m/cm.yaml": configmap("a", {"v": "fix"})}
    )
    st = settled(objects, "auto", fix, "Healthy")
    assert "pinnedRevision" not in st and "pinnedFrom" not in st
    assert not any(c["type"] == "RolledBack" for c in st.get("conditions") or [])
    assert cm_data(api, namespace, "a") == {"v": "fix"}
    events = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=auto")
        .items
    )
    assert any(e.reason == "RollbackLifted" and fix[:8] in e.message for e in events)

    # Bad again: pinned to the fix this time; `herd app rollback` (a revert is a new commit
    # too) lifts the pin, and what it syncs is what the pin already runs.
    bad2 = gitrepo.commit(
        "dev",
        "bad again",
        {
            "m/web.yaml": deployment(1, ready=False, version="2"),
            "m/cm.yaml": configmap("a", {"v": "bad2"}),
        },
    )
    st = wait_for(pinned, 90, "the Application pinned again")
    assert st["pinnedRevision"] == fix and st["pinnedFrom"] == bad2
    settled(objects, "auto", fix, "Healthy")
    out = herd(cluster, tmp_path, "app", "rollback", "auto", "-n", namespace)
    assert out.returncode == 0, out.stdout + out.stderr
    revert = gitrepo.head("dev")
    assert git("rev-parse", f"{revert}^", cwd=gitrepo.origin) == bad2
    assert tree(gitrepo, revert, "m") == tree(gitrepo, fix, "m")
    assert f"Synced at {revert[:8]}, nothing to apply" in out.stdout, out.stdout
    st = settled(objects, "auto", revert, "Healthy", synced=False)
    assert "pinnedRevision" not in st
    assert cm_data(api, namespace, "a") == {"v": "fix"}


def test_admission_refuses_a_rollback_wait_below_five_seconds(
    objects: Custom, gitrepo: Repo
) -> None:
    with pytest.raises(ApiException) as err:
        application(
            objects,
            "hasty",
            gitrepo,
            "m",
            objects.namespace,
            automated={"rollback": {"onDegraded": True, "after": "1s"}},
        )
    assert "rollback.after must be at least 5s" in str(err.value.body)
    with pytest.raises(ApiException) as err:
        application(
            objects,
            "odd",
            gitrepo,
            "m",
            objects.namespace,
            automated={"rollback": {"onDegraded": True, "after": "5 m"}},
        )
    assert err.value.status == 422
