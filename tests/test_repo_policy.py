"""Which repository and which revision an Application may name, through the real parts (real
bare repositories, the operator process, the API server): a dot segment does not climb out of
the Project's sourceRepos glob (N5), a fork's pull-request head is not a revision, and an
Application may name a Project only from a namespace the Project lists (N10)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo, git
from herd_operator.gitops.git import cache_key

from .applications import cm_data, configmap, synced_at
from .helpers import Custom, OperatorProcess, sync_project, wait_for

pytestmark = pytest.mark.usefixtures("live_operator")
PLURAL = "applications"


@pytest.fixture
def team_a(api: ApiClient, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A Project whose Applications may use the repositories under tmp_path/team-a only."""
    name = sync_project(api, namespace, source_repos=(f"{(tmp_path / 'team-a').as_uri()}/*",))
    yield name
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, "projects", name)


def app(objects: Custom, name: str, url: str, revision: str, namespace: str) -> None:
    objects.create(
        "Application",
        PLURAL,
        name,
        {
            "project": f"p-{namespace}",
            "source": {"repoURL": url, "targetRevision": revision, "path": "m"},
            "destination": {"namespace": namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    )


def condition(objects: Custom, name: str, type_: str) -> str:
    status: dict[str, Any] = objects.get(PLURAL, name).get("status") or {}
    return next((c["message"] for c in status.get("conditions") or [] if c["type"] == type_), "")


def test_a_dot_segment_does_not_leave_the_projects_repositories(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path, team_a: str
) -> None:
    ours = Repo.create(tmp_path / "team-a", {"m/cm.yaml": configmap("ours", {})})
    attacker = Repo.create(tmp_path / "attacker", {"m/cm.yaml": configmap("attacker", {})})
    app(objects, "ours", ours.url, "main", namespace)
    # file:///…/team-a/../attacker/origin.git matched the glob file:///…/team-a/* and git
    # fetched the attacker's repository.
    sneaky = ours.url.replace("/team-a/", "/team-a/../attacker/")
    assert Path(sneaky.removeprefix("file://")).resolve() == attacker.origin
    app(objects, "sneaky", sneaky, "main", namespace)
    message = wait_for(lambda: condition(objects, "sneaky", "InvalidSpecError"), 30, "refused")
    assert "dot segment" in message
    synced_at(objects, "ours", ours.head("main"))  # the same operator, a tick later
    assert cm_data(api, namespace, "attacker") is None


def test_a_pull_request_head_is_not_a_revision(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path, team_a: str
) -> None:
    repo = Repo.create(tmp_path / "team-a", {"m/cm.yaml": configmap("main", {})})
    # A fork's pull request, as GitHub keeps it: a commit on no branch of the repository.
    git("checkout", "--quiet", "--detach", cwd=repo.work)
    (repo.work / "m" / "cm.yaml").write_text(configmap("fork", {}))
    git("commit", "--quiet", "-am", "from a fork", cwd=repo.work)
    fork = git("rev-parse", "HEAD", cwd=repo.work)
    git("push", "--quiet", "origin", "HEAD:refs/pull/1/head", cwd=repo.work)
    app(objects, "by-ref", repo.url, "refs/pull/1/head", namespace)
    app(objects, "by-sha", repo.url, fork, namespace)
    app(objects, "by-branch", repo.url, "main", namespace)
    for name in ("by-ref", "by-sha"):

        def refused(name: str = name) -> str:
            return condition(objects, name, "ComparisonError")

        assert "not found" in wait_for(refused, 30, name)
    synced_at(objects, "by-branch", repo.head("main"))
    assert cm_data(api, namespace, "fork") is None


def test_an_application_names_a_project_only_from_a_namespace_it_lists(
    api: ApiClient,
    namespace: str,
    make_namespace: Callable[[str], str],
    tmp_path: Path,
    live_operator: OperatorProcess,
) -> None:
    """Whoever may write an Application in one reconciled namespace could name any Project,
    and act as its ServiceAccount in its destinations. Now only from a sourceNamespace."""
    project = sync_project(api, namespace)  # sourceNamespaces: [namespace]
    objects = client.CustomObjectsApi(api)
    try:
        stranger = make_namespace("t")  # reconciled by the operator, not listed in the Project
        repo = Repo.create(tmp_path / "repo", {"m/cm.yaml": configmap("from-stranger", {})})
        apps = Custom(api, stranger)
        apps.create(
            "Application",
            PLURAL,
            "borrow",
            {
                "project": project,
                "source": {"repoURL": repo.url, "targetRevision": "main", "path": "m"},
                "destination": {"namespace": namespace},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            },
        )
        message = wait_for(lambda: condition(apps, "borrow", "InvalidSpecError"), 30, "refused")
        assert f"project {project} does not permit Applications in namespace {stranger}" in (
            message
        )
        # Refused before anything: no mirror of the repository, nothing applied.
        mirror = Path(live_operator.env["HERD_STATE_DIR"]) / "git" / "repos"
        assert not (mirror / cache_key(repo.url, None)).exists()
        assert cm_data(api, namespace, "from-stranger") is None

        # Listed (a glob), the same Application syncs.
        objects.patch_cluster_custom_object(
            GROUP,
            VERSION,
            "projects",
            project,
            {"spec": {"sourceNamespaces": [namespace, f"{stranger[:-2]}*"]}},
        )
        synced_at(apps, "borrow", repo.head("main"))
        assert cm_data(api, namespace, "from-stranger") == {}
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, "projects", project)
