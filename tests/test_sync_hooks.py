"""Sync hooks with Argo's semantics through the real parts (a real repository, the operator,
the API server, kwok's nodes and the Job controller): PreSync before anything is applied,
PostSync once all is Healthy, SyncFail on a failed sync, generateName, the delete policies,
hooks run again at each sync and never OutOfSync nor pruned; the Helm mapping as pure
functions.

Under kwok a Job's pod completes by itself (its pod-complete stage), a bare Pod stays Running:
the tests end such a hook as its container would, by writing the Pod's status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_operator.gitops import hooks

from .applications import app_status, application, cm_data, configmap, synced_at
from .helpers import Custom, read_or_none, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")


def hook_doc(kind: str, name: str, phase: str, policy: str | None = None, **meta: Any) -> str:
    annotations = {"argocd.argoproj.io/hook": phase}
    if policy:
        annotations["argocd.argoproj.io/hook-delete-policy"] = policy
    metadata: dict[str, Any] = {**meta, "annotations": annotations}
    if name.endswith("-"):
        metadata["generateName"] = name
    else:
        metadata["name"] = name
    pod = {
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        "restartPolicy": "Never",
    }
    if kind == "Job":
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata,
            "spec": {"backoffLimit": 0, "template": {"spec": pod}},
        }
    else:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod}
    return json.dumps(body) + "\n"


def pods(api: ApiClient, namespace: str, prefix: str) -> list[Any]:
    items = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    return [p for p in items if p.metadata.name.startswith(prefix)]


def end_pod(api: ApiClient, namespace: str, name: str, phase: str) -> None:
    """What the container would do: the Pod ends `phase` (once kwok has it Running)."""
    core = client.CoreV1Api(api)
    wait_for(
        lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running",
        60,
        f"pod {name} Running",
    )
    core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase}})


def operation(objects: Custom, name: str) -> dict[str, Any]:
    return dict(app_status(objects, name).get("operationState") or {})


def job(api: ApiClient, namespace: str, name: str) -> Any:
    return read_or_none(client.BatchV1Api(api).read_namespaced_job, name, namespace)


def test_phases_in_order_and_again_each_sync(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    files = {
        "app/presync.yaml": hook_doc("Pod", "migrate-", "PreSync"),
        "app/cm.yaml": configmap("app", {"v": "1"}),
        "app/smoke.yaml": hook_doc("Job", "smoke", "PostSync", "HookSucceeded"),
        "app/notify.yaml": hook_doc("Job", "notify", "PostSync"),
        "app/skipped.yaml": json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "skipped",
                    "annotations": {"argocd.argoproj.io/hook": "Skip"},
                },
            }
        ),
    }
    sha = gitrepo.commit("dev", "hooks", files)
    application(objects, "hooked", gitrepo, "app", namespace)

    # PreSync runs first, and nothing else is applied until it has completed.
    def presync_waits() -> list[Any]:
        op = operation(objects, "hooked")
        waiting = op.get("phase") == "Running" and "PreSync hook Pod migrate-" in str(
            op.get("message")
        )
        return pods(api, namespace, "migrate-") if waiting else []

    try:
        first = wait_for(presync_waits, 60, "the sync waiting on its PreSync hook")
    except AssertionError as err:
        raise AssertionError(f"{err}; status: {app_status(objects, 'hooked')}") from None
    assert len(first) == 1
    assert cm_data(api, namespace, "app") is None
    assert job(api, namespace, "notify") is None
    results = operation(objects, "hooked")["syncResult"]["resources"]
    assert [(r["hookType"], r["hookPhase"], r["kind"]) for r in results] == [
        ("PreSync", "Running", "Pod")
    ]
    end_pod(api, namespace, first[0].metadata.name, "Succeeded")

    st = synced_at(objects, "hooked", sha)
    wait_for(lambda: operation(objects, "hooked").get("phase") == "Succeeded", 60, "Succeeded")
    st = app_status(objects, "hooked")
    assert st["sync"]["status"] == "Synced"  # hooks never make it OutOfSync
    assert cm_data(api, namespace, "app") == {"v": "1"}
    assert cm_data(api, namespace, "skipped") is None
    # Hooks are not among its objects: never compared, never pruned.
    assert [(r["kind"], r["name"]) for r in st["resources"]] == [("ConfigMap", "app")]
    ran = sorted(
        (r["hookType"], r["kind"], r["name"][:8], r["hookPhase"])
        for r in st["operationState"]["syncResult"]["resources"]
    )
    assert ran == [
        ("PostSync", "Job", "notify", "Succeeded"),
        ("PostSync", "Job", "smoke", "Succeeded"),
        ("PreSync", "Pod", "migrate-", "Succeeded"),
    ]
    # HookSucceeded: gone once done; BeforeHookCreation (the default): kept until the next.
    wait_for(lambda: job(api, namespace, "smoke") is None, 30, "smoke deleted")
    notified = job(api, namespace, "notify")
    assert notified is not None and notified.status.succeeded == 1
    # A new revision runs every hook again: a new PreSync pod, notify re-created.
    sha2 = gitrepo.commit("dev", "v2", {"app/cm.yaml": configmap("app", {"v": "2"})})
    second = wait_for(
        lambda: [
            p for p in pods(api, namespace, "migrate-") if p.metadata.name != first[0].metadata.name
        ],
        60,
        "a second PreSync run",
    )
    assert cm_data(api, namespace, "app") == {"v": "1"}  # not before the PreSync hook
    end_pod(api, namespace, second[0].metadata.name, "Succeeded")
    synced_at(objects, "hooked", sha2)
    wait_for(lambda: operation(objects, "hooked").get("phase") == "Succeeded", 60, "Succeeded")
    assert cm_data(api, namespace, "app") == {"v": "2"}
    again = wait_for(lambda: job(api, namespace, "notify"), 30, "notify again")
    assert again.metadata.uid != notified.metadata.uid
    # A cascade delete takes the hook runs that stayed (BeforeHookCreation's last) too.
    objects.api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "applications",
        "hooked",
        {"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}},
    )
    objects.delete("applications", "hooked")
    objects.wait_gone("applications", "hooked", timeout=60)
    assert cm_data(api, namespace, "app") is None
    gone = wait_for(
        lambda: (j := job(api, namespace, "notify")) is None or j.metadata.deletion_timestamp,
        30,
        "notify going",
    )
    assert gone


def test_a_failed_hook_fails_the_sync_and_runs_sync_fail(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev",
        "a failing check",
        {
            "app/check.yaml": hook_doc("Pod", "check", "PreSync", "HookFailed"),
            "app/cm.yaml": configmap("app", {"v": "1"}),
            "app/cleanup.yaml": hook_doc("Job", "cleanup", "SyncFail"),
        },
    )
    objects.create(
        "Application",
        "applications",
        "failing",
        {
            "project": f"p-{namespace}",
            "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "app"},
            # Argo's name of the cluster it runs in: the one Herd accepts.
            "destination": {"namespace": namespace, "name": "in-cluster"},
            "syncPolicy": {"automated": {"prune": True}, "retry": {"limit": 0}},
        },
    )
    wait_for(lambda: pods(api, namespace, "check"), 60, "the PreSync pod")
    end_pod(api, namespace, "check", "Failed")

    op = wait_for(
        lambda: (o := operation(objects, "failing")).get("phase") == "Failed" and o, 60, "Failed"
    )
    assert "PreSync hook Pod check (check) failed" in op["message"]
    assert op["syncResult"]["revision"] == sha
    by_type = {r["hookType"]: r for r in op["syncResult"]["resources"]}
    assert by_type["PreSync"]["hookPhase"] == "Failed"
    assert by_type["SyncFail"]["name"] == "cleanup"
    # SyncFail ran; HookFailed deleted the failed run; nothing of the Sync phase applied.
    wait_for(lambda: job(api, namespace, "cleanup"), 30, "the SyncFail job")
    wait_for(lambda: not pods(api, namespace, "check"), 30, "the failed hook deleted")
    assert cm_data(api, namespace, "app") is None
    st = app_status(objects, "failing")
    assert st["sync"]["status"] == "OutOfSync"


def test_generate_name_only_for_hooks_unsupported_phases_said_and_the_project_holds(
    objects: Custom, gitrepo: Repo, namespace: str
) -> None:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cm-"}}
    gitrepo.commit(
        "dev",
        "no name; a PreDelete hook",
        {
            "app/cm.yaml": json.dumps(doc),
            "del/job.yaml": hook_doc("Job", "bye", "PreDelete"),
            # A hook is held to the Project as any object: no namespace outside it.
            "away/job.yaml": hook_doc("Job", "escape-", "PreSync", namespace="kube-system"),
        },
    )
    application(objects, "unnamed", gitrepo, "app", namespace)
    application(objects, "predelete", gitrepo, "del", namespace)
    application(objects, "away", gitrepo, "away", namespace)

    def condition(name: str) -> str:
        for c in app_status(objects, name).get("conditions") or []:
            if c.get("type") == "ComparisonError":
                return str(c.get("message"))
        return ""

    message = wait_for(lambda: condition("unnamed"), 60, "ComparisonError")
    assert "ConfigMap cm-: metadata.generateName is for hooks only" in message
    message = wait_for(lambda: condition("predelete"), 60, "ComparisonError")
    assert "Job bye: hooks of phase PreDelete are not supported" in message
    message = wait_for(lambda: condition("away"), 60, "ComparisonError")
    assert "namespace kube-system is not a destination of project" in message
    assert "operationState" not in app_status(objects, "away")  # nothing was run


def test_helm_hooks_as_argo_maps_them(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    """A chart's pre-install Job runs (PreSync) before its ConfigMap, a post-upgrade one
    after (PostSync), each deleted once it succeeded (hook-succeeded)."""

    def helm_job(name: str, hook: str, weight: str) -> str:
        return (
            f"apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{{{ .Release.Name }}}}-{name}\n"
            f"  annotations:\n    helm.sh/hook: {hook}\n    helm.sh/hook-weight: {weight!r}\n"
            "    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded\n"
            "spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n"
            "      containers:\n        - name: main\n          image: busybox\n"
        )

    sha = gitrepo.commit(
        "dev",
        "a chart with hooks",
        {
            "chart/Chart.yaml": "apiVersion: v2\nname: hooked\nversion: 0.1.0\n",
            "chart/templates/cm.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
                "data:\n  k: v\n"
            ),
            "chart/templates/migrate.yaml": helm_job("migrate", "pre-install,pre-upgrade", "-1"),
            "chart/templates/check.yaml": helm_job("check", "post-install,post-upgrade", "5"),
        },
    )
    application(objects, "charted", gitrepo, "chart", namespace, helm={"releaseName": "rel"})
    synced_at(objects, "charted", sha)
    op = wait_for(
        lambda: (o := operation(objects, "charted")).get("phase") == "Succeeded" and o,
        60,
        "Succeeded",
    )
    ran = sorted((r["hookType"], r["name"], r["hookPhase"]) for r in op["syncResult"]["resources"])
    assert ran == [("PostSync", "rel-check", "Succeeded"), ("PreSync", "rel-migrate", "Succeeded")]
    assert cm_data(api, namespace, "rel") == {"k": "v"}
    st = app_status(objects, "charted")
    assert [(r["kind"], r["name"]) for r in st["resources"]] == [("ConfigMap", "rel")]
    for name in ("rel-migrate", "rel-check"):  # hook-succeeded
        wait_for(lambda n=name: job(api, namespace, n) is None, 30, f"{name} deleted")


# -- pure: Argo's annotation and Helm's, as Argo maps them -----------------------------------
def obj(**annotations: str) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": "j", "annotations": annotations}}


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        ({"argocd.argoproj.io/hook": "PreSync"}, ["PreSync"]),
        ({"argocd.argoproj.io/hook": "PreSync,PostSync"}, ["PreSync", "PostSync"]),
        ({"argocd.argoproj.io/hook": "Skip"}, []),
        ({"helm.sh/hook": "pre-install,pre-upgrade"}, ["PreSync"]),
        ({"helm.sh/hook": "post-install"}, ["PostSync"]),
        ({"helm.sh/hook": "post-upgrade"}, ["PostSync"]),
        ({"helm.sh/hook": "test-success"}, []),
        ({"helm.sh/hook": "test"}, []),
        ({"helm.sh/hook": "crd-install"}, None),
        # Argo's annotation wins over Helm's.
        ({"helm.sh/hook": "pre-install", "argocd.argoproj.io/hook": "Sync"}, ["Sync"]),
    ],
)
def test_phases(annotations: dict[str, str], expected: list[str] | None) -> None:
    assert hooks.phases(obj(**annotations)) == expected


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"helm.sh/hook": "pre-delete"}, "Helm hooks pre-delete are not supported"),
        ({"helm.sh/hook": "post-delete"}, "Helm hooks post-delete are not supported"),
        ({"argocd.argoproj.io/hook": "PostDelete"}, "hooks of phase PostDelete are not"),
        ({"argocd.argoproj.io/hook": "Whenever"}, "unknown hook phase 'Whenever'"),
    ],
)
def test_unsupported_phases(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(hooks.HookError, match=message):
        hooks.phases(obj(**annotations))


def test_delete_policies_and_weights() -> None:
    assert hooks.policies(obj()) == {"BeforeHookCreation"}  # Argo's default
    assert hooks.policies(
        obj(**{"argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed"})
    ) == {"HookSucceeded", "HookFailed"}
    assert hooks.policies(
        obj(**{"helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"})
    ) == {"BeforeHookCreation", "HookSucceeded"}
    assert hooks.policies(obj(**{"helm.sh/hook-delete-policy": "hook-failed"})) == {"HookFailed"}
    with pytest.raises(hooks.HookError):
        hooks.policies(obj(**{"argocd.argoproj.io/hook-delete-policy": "Never"}))
    assert hooks.hook_wave(obj(**{"helm.sh/hook-weight": "-5"})) == -5
    assert (
        hooks.hook_wave(obj(**{"helm.sh/hook-weight": "-5", "argocd.argoproj.io/sync-wave": "3"}))
        == 3
    )


def test_run_states() -> None:
    done = {"type": "Complete", "status": "True"}
    failed = {"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}
    assert hooks.state({"kind": "Job", "status": {"conditions": [done]}})[0] == "Succeeded"
    assert hooks.state({"kind": "Job", "status": {"conditions": [failed]}}) == (
        "Failed",
        "BackoffLimitExceeded",
    )
    assert hooks.state({"kind": "Job", "status": {}})[0] == "Running"
    assert hooks.state({"kind": "Pod", "status": {"phase": "Running"}})[0] == "Running"
    assert hooks.state({"kind": "Pod", "status": {"phase": "Succeeded"}})[0] == "Succeeded"
    assert hooks.state({"kind": "ConfigMap", "apiVersion": "v1"})[0] == "Succeeded"
    assert hooks.state(None)[0] == "Failed"
