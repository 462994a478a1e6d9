"""Argo's sync options through the real parts (a real repository, the operator, the API
server and its garbage collector): Replace=true (the Application's and one object's own),
ApplyOutOfSyncOnly=true, PrunePropagationPolicy; ignoreDifferences with
RespectIgnoreDifferences=true; destination.name as the
CRD's CEL rules take it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import FIELD_MANAGER
from herd_devkit.local.gitrepo import Repo

from .applications import application, cm, cm_data, synced_at
from .helpers import Custom, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")


def doc(name: str, data: dict[str, str], options: str | None = None, **extra: Any) -> str:
    meta: dict[str, Any] = {"name": name}
    if options:
        meta["annotations"] = {"argocd.argoproj.io/sync-options": options}
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data, **extra}
    )


def label_by_hand(api: ApiClient, namespace: str, name: str) -> None:
    """Another manager's field on the object (kubectl label, a controller...)."""
    client.CoreV1Api(api).patch_namespaced_config_map(
        name, namespace, {"metadata": {"labels": {"by-hand": "yes"}}}, field_manager="someone"
    )


def herd_operation(obj: Any) -> str | None:
    return next(
        (m.operation for m in obj.metadata.managed_fields or [] if m.manager == FIELD_MANAGER),
        None,
    )


def test_replace_and_apply_out_of_sync_only(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev",
        "three",
        {
            # One app applies, but for one object of its own Replace=true; the other
            # replaces all (and says ApplyOutOfSyncOnly, which Herd always does).
            "mixed/applied.yaml": doc("applied", {"v": "1"}),
            "mixed/replaced.yaml": doc("replaced", {"v": "1"}, "Replace=true"),
            "all/whole.yaml": doc("whole", {"v": "1"}),
            "all/still.yaml": doc("still", {"v": "1"}),
        },
    )
    application(objects, "mixed", gitrepo, "mixed", namespace)
    application(
        objects,
        "all",
        gitrepo,
        "all",
        namespace,
        syncPolicy={
            "automated": {"prune": True, "selfHeal": True},
            "syncOptions": ["Replace=true", "ApplyOutOfSyncOnly=true"],
        },
    )
    synced_at(objects, "mixed", sha)
    synced_at(objects, "all", sha)
    assert herd_operation(cm(api, namespace, "applied")) == "Apply"
    for name in ("replaced", "whole", "still"):
        assert herd_operation(cm(api, namespace, name)) == "Update", name  # created by POST
        label_by_hand(api, namespace, name)
    label_by_hand(api, namespace, "applied")
    still = cm(api, namespace, "still").metadata.resource_version

    sha2 = gitrepo.commit(
        "dev",
        "v2",
        {
            "mixed/applied.yaml": doc("applied", {"v": "2"}),
            "mixed/replaced.yaml": doc("replaced", {"v": "2"}, "Replace=true"),
            "all/whole.yaml": doc("whole", {"v": "2"}),
        },
    )
    synced_at(objects, "mixed", sha2)
    synced_at(objects, "all", sha2)
    # A server-side apply leaves another manager's field; a replace (PUT) takes it away.
    applied, replaced, whole = (cm(api, namespace, n) for n in ("applied", "replaced", "whole"))
    assert applied.data == {"v": "2"} and applied.metadata.labels["by-hand"] == "yes"
    assert replaced.data == {"v": "2"} and "by-hand" not in (replaced.metadata.labels or {})
    assert whole.data == {"v": "2"} and "by-hand" not in (whole.metadata.labels or {})
    assert herd_operation(whole) == "Update"
    # Only what differed was written.
    assert cm(api, namespace, "still").metadata.resource_version == still


@pytest.mark.parametrize(
    ("policy", "kept"), [("orphan", True), ("background", False), ("foreground", False)]
)
def test_prune_propagation_policy(
    objects: Custom,
    api: ApiClient,
    gitrepo: Repo,
    namespace: str,
    policy: str,
    kept: bool,
) -> None:
    sha = gitrepo.commit(
        "dev", "owner", {"app/owner.yaml": doc("owner", {"v": "1"}), "app/k.yaml": doc("k", {})}
    )
    application(
        objects,
        "pruning",
        gitrepo,
        "app",
        namespace,
        syncPolicy={
            "automated": {"prune": True},
            "syncOptions": [f"PrunePropagationPolicy={policy}"],
        },
    )
    synced_at(objects, "pruning", sha)
    owner = cm(api, namespace, "owner")
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    client.CoreV1Api(api).create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])),
    )
    sha2 = gitrepo.commit("dev", "no owner", remove=("app/owner.yaml",))
    synced_at(objects, "pruning", sha2)
    wait_for(lambda: cm(api, namespace, "owner") is None, 60, "owner pruned")
    if kept:
        # Orphaned: the garbage collector takes the owner reference away, not the object.
        wait_for(
            lambda: not (cm(api, namespace, "dependent").metadata.owner_references or []),
            60,
            "dependent orphaned",
        )
    else:
        wait_for(lambda: cm(api, namespace, "dependent") is None, 60, "dependent deleted")


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"name": "prod"}, "destination.name may only be 'in-cluster'"),
        (
            {"name": "in-cluster", "server": "https://kubernetes.default.svc"},
            "set server or name, not both",
        ),
    ],
)
def test_destination_name_refused(
    objects: Custom, gitrepo: Repo, namespace: str, destination: dict[str, str], message: str
) -> None:
    with pytest.raises(ApiException) as err:
        application(
            objects,
            "elsewhere",
            gitrepo,
            "app",
            namespace,
            destination={
                "namespace": namespace,
                **destination,
            },
        )
    assert err.value.status == 422
    assert message in str(err.value.body)


def test_destination_name_in_cluster(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit("dev", "one", {"app/a.yaml": doc("a", {"v": "1"})})
    application(
        objects,
        "named",
        gitrepo,
        "app",
        namespace,
        destination={"name": "in-cluster", "namespace": namespace},
    )
    synced_at(objects, "named", sha)
    assert cm_data(api, namespace, "a") == {"v": "1"}


def test_ignore_differences_respected(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev",
        "two",
        {
            "app/tuned.yaml": doc("tuned", {"a": "1", "b": "1"}),
            "app/managed.yaml": doc("managed", {"x": "1", "y": "1"}),
        },
    )
    application(
        objects,
        "ignoring",
        gitrepo,
        "app",
        namespace,
        ignoreDifferences=[
            {"kind": "ConfigMap", "name": "tuned", "jsonPointers": ["/data/b"]},
            {"group": "", "kind": "ConfigMap", "managedFieldsManagers": ["someone"]},
        ],
        syncPolicy={
            "automated": {"prune": True, "selfHeal": True},
            "syncOptions": ["RespectIgnoreDifferences=true"],
        },
    )
    synced_at(objects, "ignoring", sha)
    core = client.CoreV1Api(api)
    # By hand (an HPA, an operator, a person): fields git also sets.
    core.patch_namespaced_config_map("tuned", namespace, {"data": {"b": "hand"}})
    core.patch_namespaced_config_map(
        "managed", namespace, {"data": {"x": "hand"}}, field_manager="someone"
    )
    sha2 = gitrepo.commit(
        "dev",
        "v2",
        {
            "app/tuned.yaml": doc("tuned", {"a": "2", "b": "2"}),
            "app/managed.yaml": doc("managed", {"x": "2", "y": "2"}),
        },
    )
    st = synced_at(objects, "ignoring", sha2)
    # Selfheal and the new commit left the ignored fields as they were live; the rest synced.
    assert cm_data(api, namespace, "tuned") == {"a": "2", "b": "hand"}
    assert cm_data(api, namespace, "managed") == {"x": "hand", "y": "2"}
    assert {r["name"]: r["status"] for r in st["resources"]} == {
        "tuned": "Synced",
        "managed": "Synced",
    }


def test_jq_path_expressions_refused(objects: Custom, gitrepo: Repo, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        application(
            objects,
            "jq",
            gitrepo,
            "app",
            namespace,
            ignoreDifferences=[{"kind": "Deployment", "jqPathExpressions": [".spec.replicas"]}],
        )
    assert err.value.status == 422
    assert "jqPathExpressions are not supported by Herd" in str(err.value.body)
