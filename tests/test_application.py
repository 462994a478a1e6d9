"""Application: git -> cluster sync through the real parts (a real bare repository, the
operator process, the API server): apply, update, prune, selfHeal, broken commits, Projects and
sync by impersonation, hostile sources, Helm sources, waves gated on health, app of apps,
cascade delete and the push webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, utils
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, TRACKING_ANNOTATION, VERSION
from herd_devkit.local.gitrepo import Repo

from .applications import PLURAL, app_status, application, cm_data, configmap, synced_at
from .charts import template
from .conftest import PROGRAMS_NAMESPACE, WEBHOOK_PORT, WEBHOOK_SECRET
from .helpers import Custom, sync_project, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")


def test_sync_update_prune_and_self_heal(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev",
        "two configmaps",
        {
            "manifests/a.yaml": configmap("a", {"k": "1"}),
            "manifests/b.yaml": configmap("b", {"k": "1"}),
        },
    )
    application(objects, "plain", gitrepo, "manifests", namespace)
    st = synced_at(objects, "plain", sha)
    assert st["health"]["status"] == "Healthy"
    assert st["operationState"]["phase"] == "Succeeded"
    assert [h["revision"] for h in st["history"]] == [sha]
    assert sorted((r["kind"], r["name"], r["status"]) for r in st["resources"]) == [
        ("ConfigMap", "a", "Synced"),
        ("ConfigMap", "b", "Synced"),
    ]
    live = client.CoreV1Api(api).read_namespaced_config_map("a", namespace)
    assert (
        live.metadata.annotations[TRACKING_ANNOTATION]
        == f"{namespace}_plain:/ConfigMap:{namespace}/a"
    )

    sha2 = gitrepo.commit(
        "dev",
        "change a, drop b",
        {"manifests/a.yaml": configmap("a", {"k": "2"})},
        remove=("manifests/b.yaml",),
    )
    st = synced_at(objects, "plain", sha2)
    assert cm_data(api, namespace, "a") == {"k": "2"}
    wait_for(lambda: cm_data(api, namespace, "b") is None, 30, "b pruned")
    assert [h["revision"] for h in st["history"]] == [sha, sha2]

    # Someone edits the live object by hand: selfHeal puts git's version back.
    client.CoreV1Api(api).patch_namespaced_config_map("a", namespace, {"data": {"k": "hand"}})
    wait_for(lambda: cm_data(api, namespace, "a") == {"k": "2"}, 30, "hand edit reverted")


def test_without_self_heal_drift_is_reported_not_reverted(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {"k": "1"})})
    application(objects, "noheal", gitrepo, "m", namespace, self_heal=False, prune=False)
    synced_at(objects, "noheal", sha)
    client.CoreV1Api(api).patch_namespaced_config_map("a", namespace, {"data": {"k": "hand"}})
    wait_for(
        lambda: app_status(objects, "noheal")["sync"]["status"] == "OutOfSync", 30, "OutOfSync"
    )
    assert cm_data(api, namespace, "a") == {"k": "hand"}
    # Without prune, a removed object is reported, not deleted.
    sha2 = gitrepo.commit(
        "dev", "drop a", {"m/keep.yaml": configmap("keep", {})}, remove=("m/a.yaml",)
    )
    st = wait_for(
        lambda: (
            (s := app_status(objects, "noheal"))["sync"]["revision"] == sha2
            and any(r.get("requiresPruning") for r in s["resources"])
            and s
        ),
        30,
        "requiresPruning",
    )
    assert any(r["name"] == "a" and r["requiresPruning"] for r in st["resources"])
    assert cm_data(api, namespace, "a") is not None


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"m/a.yaml": "kind: ConfigMap\n  bad: [yaml\n"}, "not valid YAML"),
        (
            {
                "m/a.yaml": json.dumps(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": "d"},
                        "spec": {"replicas": "many"},
                    }
                )
            },
            "Deployment",
        ),
        (
            {
                "m/a.yaml": json.dumps(
                    {"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}}
                )
            },
            "no kind Nope",
        ),
        # 444 bytes of nested aliases would expand to ~80 MB: refused before expansion.
        (
            {
                "m/a.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n"
                + "".join(
                    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                    for i in range(8)
                )
            },
            "YAML aliases (*name) are not allowed",
        ),
        ({"m/a.yaml": "just a string\n"}, "not an object with apiVersion, kind and metadata"),
        ({"m/a.yaml": "- a\n- b\n"}, "not an object with apiVersion, kind and metadata"),
        (
            {"m/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n"},
            "not an object with apiVersion, kind and metadata",
        ),
    ],
)
def test_broken_commit_changes_nothing(
    objects: Custom,
    api: ApiClient,
    gitrepo: Repo,
    namespace: str,
    broken: dict[str, str],
    message: str,
) -> None:
    sha = gitrepo.commit(
        "dev",
        "good",
        {"m/a.yaml": configmap("a", {"k": "good"}), "m/b.yaml": configmap("b", {"k": "good"})},
    )
    application(objects, "broken", gitrepo, "m", namespace)
    synced_at(objects, "broken", sha)
    # One bad file beside a good change: neither is applied.
    gitrepo.commit("dev", "bad", {**broken, "m/b.yaml": configmap("b", {"k": "changed"})})

    def comparison_error() -> str | None:
        conds = app_status(objects, "broken").get("conditions") or []
        return next((c["message"] for c in conds if c["type"] == "ComparisonError"), None)

    assert message in wait_for(comparison_error, 30, "ComparisonError")
    assert cm_data(api, namespace, "a") == {"k": "good"}
    assert cm_data(api, namespace, "b") == {"k": "good"}
    st = app_status(objects, "broken")
    assert st["sync"]["status"] == "Unknown"
    assert st["operationState"]["syncResult"]["revision"] == sha
    # The next good commit syncs normally and clears the condition.
    fixed = gitrepo.commit("dev", "fix", {"m/a.yaml": configmap("a", {"k": "fixed"})})
    st = synced_at(objects, "broken", fixed)
    assert not [c for c in st.get("conditions") or [] if c["type"] == "ComparisonError"]
    assert cm_data(api, namespace, "a") == {"k": "fixed"}
    assert cm_data(api, namespace, "b") == {"k": "changed"}


def test_project_is_enforced_before_anything_is_applied(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    gitrepo.commit(
        "dev",
        "escape",
        {
            "m/ok.yaml": configmap("ok", {}),
            "m/elsewhere.yaml": configmap("elsewhere", {}, namespace="kube-system"),
        },
    )
    application(objects, "fenced", gitrepo, "m", namespace)

    def error() -> str | None:
        conds = app_status(objects, "fenced").get("conditions") or []
        return next((c["message"] for c in conds if c["type"] == "ComparisonError"), None)

    assert "namespace kube-system is not a destination of project" in wait_for(error, 30, "refused")
    assert cm_data(api, namespace, "ok") is None
    assert cm_data(api, "kube-system", "elsewhere") is None

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"sneaky-{uuid.uuid4().hex[:6]}"},
        "rules": [],
    }
    gitrepo.commit(
        "dev", "cluster role", {"m/role.yaml": json.dumps(role)}, remove=("m/elsewhere.yaml",)
    )
    wait_for(
        lambda: "ClusterRole is not in the clusterResourceWhitelist" in (error() or ""),
        30,
        "cluster-scoped kind refused",
    )
    with pytest.raises(ApiException):
        client.RbacAuthorizationV1Api(api).read_cluster_role(role["metadata"]["name"])


CHART = {
    "charts/demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    "charts/demo/values.yaml": "greeting: hello\ntag: base\nlist: [a, b]\n",
    "charts/demo/templates/cm.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-demo\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n  tag: {{ .Values.tag | quote }}\n"
        '  list: {{ .Values.list | join "," | quote }}\n'
    ),
    "apps/demo/values.yaml": "tag: v1\nlist: [x]\n",
    "clusters/dev/values/demo.yaml": "greeting: hi-dev\n",
}


def test_helm_source_with_value_files_from_apps_and_the_environment(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit("dev", "chart", CHART)
    application(
        objects,
        "demo",
        gitrepo,
        "charts/demo",
        namespace,
        helm={
            "releaseName": "web",
            "valueFiles": ["../../apps/demo/values.yaml", "../../clusters/dev/values/demo.yaml"],
            "values": "extra: ignored\n",
        },
    )
    synced_at(objects, "demo", sha)
    # Later files win; lists are replaced, not merged (Helm's semantics).
    assert cm_data(api, namespace, "web-demo") == {"greeting": "hi-dev", "tag": "v1", "list": "x"}
    tag = gitrepo.commit("dev", "bump", {"apps/demo/values.yaml": "tag: v2\nlist: [x]\n"})
    synced_at(objects, "demo", tag)
    assert cm_data(api, namespace, "web-demo")["tag"] == "v2"  # type: ignore[index]


LIBRARY_HELPER = '{{- define "lib.greeting" -}}%s from {{ .Chart.Name }}{{- end }}\n'


def test_helm_chart_with_a_library_linked_inside_the_repository(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    """As charts/herd-*/charts/herd-lib: a symlink to a library chart elsewhere in the repo is
    followed (it stays inside the checkout), and a change to the library alone is rendered at
    the next commit: nothing to package or rebuild."""
    files = {
        "charts/lib/Chart.yaml": "apiVersion: v2\nname: lib\ntype: library\nversion: 0.1.0\n",
        "charts/lib/templates/_greeting.tpl": LIBRARY_HELPER % "hello",
        "charts/app/Chart.yaml": (
            "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n"
            "  - name: lib\n    version: 0.1.0\n    repository: file://../lib\n"
        ),
        "charts/app/templates/cm.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
            'data:\n  greeting: {{ include "lib.greeting" . | quote }}\n'
        ),
    }
    (gitrepo.work / "charts" / "app" / "charts").mkdir(parents=True)
    os.symlink("../../lib", gitrepo.work / "charts" / "app" / "charts" / "lib")
    sha = gitrepo.commit("dev", "a chart and its library", files)
    application(objects, "linked-lib", gitrepo, "charts/app", namespace)
    synced_at(objects, "linked-lib", sha)
    assert cm_data(api, namespace, "linked-lib") == {"greeting": "hello from app"}
    sha = gitrepo.commit(
        "dev", "the library changes", {"charts/lib/templates/_greeting.tpl": LIBRARY_HELPER % "hi"}
    )
    synced_at(objects, "linked-lib", sha)
    assert cm_data(api, namespace, "linked-lib") == {"greeting": "hi from app"}


def test_waves_wait_for_health(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "annotations": {"argocd.argoproj.io/sync-wave": "0"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    sha = gitrepo.commit(
        "dev", "waves", {"m/pvc.yaml": json.dumps(pvc), "m/cm.yaml": configmap("after", {}, wave=1)}
    )
    application(objects, "waves", gitrepo, "m", namespace)

    def running() -> dict[str, Any] | None:
        op = app_status(objects, "waves").get("operationState") or {}
        return op if op.get("phase") == "Running" else None

    op = wait_for(running, 30, "sync waiting on wave 1")
    assert "waiting for wave 1 of 2" in op["message"]
    assert "PersistentVolumeClaim" in op["message"]
    assert cm_data(api, namespace, "after") is None
    # A volume appears; the controller binds the claim; the next wave goes ahead.
    pv_name = f"pv-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "hostPath": {"path": "/tmp/herd-pv"},
                "claimRef": {"namespace": namespace, "name": "data"},
            },
        }
    )
    try:
        wait_for(lambda: cm_data(api, namespace, "after") is not None, 60, "wave 1 applied")
        st = synced_at(objects, "waves", sha)
        assert st["operationState"]["phase"] == "Succeeded"
        # The last wave's objects may still be settling when the sync ends: health follows.
        wait_for(
            lambda: synced_at(objects, "waves", sha)["health"]["status"] == "Healthy",
            60,
            "the Application Healthy",
        )
    finally:
        client.CoreV1Api(api).delete_persistent_volume(pv_name)


def test_custom_resource_health_and_app_of_apps(
    objects: Custom, gitrepo: Repo, namespace: str, tenants_ns: str
) -> None:
    child = {
        "apiVersion": "platform.herd-itt.com/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "child", "namespace": namespace},
        "spec": {
            "project": f"p-{namespace}",
            "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "child"},
            "destination": {"namespace": namespace},
            "syncPolicy": {"automated": {"prune": True}},
        },
    }
    template = {
        "apiVersion": "platform.herd-itt.com/v1alpha1",
        "kind": "SESTemplate",
        "metadata": {"name": f"t-{uuid.uuid4().hex[:6]}"},
        "spec": {"subject": "s", "text": "t"},
    }
    sha = gitrepo.commit(
        "dev",
        "app of apps",
        {"root/child.yaml": json.dumps(child), "child/template.yaml": json.dumps(template)},
    )
    application(objects, "root", gitrepo, "root", namespace)
    synced_at(objects, "root", sha)
    st = synced_at(objects, "child", sha)
    # The child's SESTemplate counts through its Ready condition.
    wait_for(
        lambda: app_status(objects, "child")["health"]["status"] == "Healthy", 60, "child Healthy"
    )
    wait_for(
        lambda: app_status(objects, "root")["health"]["status"] == "Healthy",
        60,
        "root Healthy through its child",
    )
    assert st["resources"][0]["kind"] == "SESTemplate"


def test_a_child_that_cannot_render_is_its_parents_error(
    objects: Custom, gitrepo: Repo, namespace: str
) -> None:
    """App of apps: a child whose source does not render has no health of its own to wait
    for; it shows on the parent as Degraded, with the child's error, not as Progressing."""
    child = {
        "apiVersion": "platform.herd-itt.com/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "broken-child", "namespace": namespace},
        "spec": {
            "project": f"p-{namespace}",
            "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "broken"},
            "destination": {"namespace": namespace},
            "syncPolicy": {"automated": {"prune": True}},
        },
    }
    sha = gitrepo.commit(
        "dev",
        "a child that does not render",
        {"parent/child.yaml": json.dumps(child), "broken/x.yaml": "not: [yaml\n"},
    )
    application(objects, "parent", gitrepo, "parent", namespace)
    synced_at(objects, "parent", sha)
    health = wait_for(
        lambda: (
            (h := app_status(objects, "parent").get("health") or {}).get("status") == "Degraded"
            and h
        ),
        60,
        "the parent Degraded by its child",
    )
    assert "broken-child" in health["message"] and "ComparisonError" in health["message"]


def test_depends_on_orders_two_apps_and_refuses_a_cycle(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    """dependsOn (Herd's extension): web syncs only once db is Synced and Healthy, saying
    which one it waits for until then; a cycle is refused with a condition naming it."""
    sha = gitrepo.commit(
        "dev",
        "db, web and a cycle",
        {
            "db/cm.yaml": configmap("db", {"k": "1"}),
            "web/cm.yaml": configmap("web", {"k": "1"}),
            "c1/cm.yaml": configmap("c1", {}),
            "c2/cm.yaml": configmap("c2", {}),
        },
    )
    source = {"repoURL": gitrepo.url, "targetRevision": "dev"}
    # db without automated sync: OutOfSync until it is turned on.
    objects.create(
        "Application",
        PLURAL,
        "db",
        {
            "project": f"p-{namespace}",
            "source": {**source, "path": "db"},
            "destination": {"namespace": namespace},
        },
    )
    application(objects, "web", gitrepo, "web", namespace, dependsOn=[{"name": "db"}])

    def condition(name: str, type_: str) -> str | None:
        found = app_status(objects, name).get("conditions") or []
        return next((c.get("message") for c in found if c.get("type") == type_), None)

    # First perhaps "not reconciled yet", while db is new; then db's own state.
    waiting = wait_for(
        lambda: (m := condition("web", "WaitingForDependency")) and "OutOfSync" in m and m,
        60,
        "web waiting for db, which is OutOfSync",
    )
    assert f"{namespace}/db" in waiting, waiting
    assert cm_data(api, namespace, "web") is None  # nothing applied while it waits
    objects.patch(PLURAL, "db", {"syncPolicy": {"automated": {"prune": True}}})
    synced_at(objects, "db", sha)
    synced_at(objects, "web", sha, timeout=90)
    assert cm_data(api, namespace, "web") == {"k": "1"}
    assert condition("web", "WaitingForDependency") is None

    application(objects, "c1", gitrepo, "c1", namespace, dependsOn=[{"name": "c2"}])
    application(objects, "c2", gitrepo, "c2", namespace, dependsOn=[{"name": "c1"}])
    cycle = wait_for(lambda: condition("c1", "InvalidSpecError"), 60, "the cycle refused")
    assert f"{namespace}/c1 -> {namespace}/c2 -> {namespace}/c1" in cycle, cycle
    assert cm_data(api, namespace, "c1") is None and cm_data(api, namespace, "c2") is None


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_push_syncs_at_once(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {"k": "1"})})
    application(objects, "hooked", gitrepo, "m", namespace, poll="1h")
    synced_at(objects, "hooked", sha)
    sha2 = gitrepo.commit("dev", "a2", {"m/a.yaml": configmap("a", {"k": "2"})})
    body = json.dumps(
        {
            "ref": "refs/heads/dev",
            "after": sha2,
            "repository": {"clone_url": gitrepo.url, "default_branch": "main"},
        }
    ).encode()
    url = f"http://127.0.0.1:{WEBHOOK_PORT}/webhooks/github"
    bad = httpx.post(
        url,
        content=body,
        timeout=10,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body, "wrong")},
    )
    assert bad.status_code == 401
    response = httpx.post(
        url,
        content=body,
        timeout=10,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)},
    )
    assert response.status_code == 200
    assert f"{namespace}/hooked" in response.json()["refreshed"]
    # Within seconds, although the poll interval is an hour.
    synced_at(objects, "hooked", sha2, timeout=15)
    assert cm_data(api, namespace, "a") == {"k": "2"}


def test_a_transient_comparison_error_is_retried_within_seconds(
    objects: Custom, api: ApiClient, tmp_path: Path, namespace: str
) -> None:
    """A clone that fails (here: the repository is not there yet) is compared again with
    backoff (2, 4, 8, 16, then 30 s), not left to the poll interval (an hour here)."""
    later = Repo(origin=tmp_path / "later" / "origin.git", work=tmp_path / "later" / "work")
    application(objects, "late", later, "m", namespace, poll="1h")
    wait_for(
        lambda: (app_status(objects, "late").get("comparisonRetry") or {}).get("count", 0) >= 2,
        60,
        "a failed clone retried",
    )
    assert (app_status(objects, "late").get("conditions") or [{}])[0].get("type") == (
        "ComparisonError"
    )
    repo = Repo.create(tmp_path / "later", {"m/a.yaml": configmap("a", {"k": "1"})})
    status = synced_at(objects, "late", repo.head("dev"), timeout=60)
    assert not status.get("comparisonRetry") and not status.get("conditions")
    assert cm_data(api, namespace, "a") == {"k": "1"}


def test_manual_sync_of_an_app_without_automation(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster: Any
) -> None:
    import os
    import subprocess
    import sys

    sha = gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {"k": "1"})})
    objects.create(
        "Application",
        PLURAL,
        "manual",
        {
            "project": f"p-{namespace}",
            "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "m"},
            "destination": {"namespace": namespace},
        },
    )
    wait_for(
        lambda: (app_status(objects, "manual").get("sync") or {}).get("status") == "OutOfSync",
        30,
        "OutOfSync without automation",
    )
    assert cm_data(api, namespace, "a") is None
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "herd_core",
            "app",
            "sync",
            "manual",
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout
    assert cm_data(api, namespace, "a") == {"k": "1"}
    synced_at(objects, "manual", sha)
    assert "operation" not in objects.get(PLURAL, "manual")


# -- the security boundary: Projects, impersonation, hostile sources ------------------------
def condition(objects: Custom, name: str, type_: str = "ComparisonError") -> str | None:
    conds = app_status(objects, name).get("conditions") or []
    return next((c["message"] for c in conds if c["type"] == type_), None)


@pytest.mark.parametrize("kind", ["plain", "helm"])
def test_symlink_out_of_the_checkout_is_refused(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, tmp_path: Path, kind: str
) -> None:
    # What the link points at: a file of the operator's disk (its kubeconfig, in the attack).
    outside = tmp_path / "outside.yaml"
    outside.write_text(configmap("stolen", {"kubeconfig": "admin-token"}))
    if kind == "plain":
        path, link = "m", "m/leak.yaml"
        files = {"m/ok.yaml": configmap("ok", {})}
        spec: dict[str, Any] = {}
    else:
        path, link = "charts/leak", "charts/leak/files/k"
        files = {
            "charts/leak/Chart.yaml": "apiVersion: v2\nname: leak\nversion: 0.1.0\n",
            "charts/leak/templates/cm.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n"
                'data:\n  k: {{ .Files.Get "files/k" | quote }}\n'
            ),
        }
        spec = {"helm": {"releaseName": "leak"}}
    (gitrepo.work / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, gitrepo.work / link)
    gitrepo.commit("dev", "a link out", files)
    application(objects, "linked", gitrepo, path, namespace, **spec)
    message = wait_for(lambda: condition(objects, "linked"), 30, "ComparisonError")
    assert f"symlink {link} points outside the repository" in message
    assert cm_data(api, namespace, "stolen") is None
    assert cm_data(api, namespace, "ok") is None
    assert app_status(objects, "linked")["sync"]["status"] == "Unknown"


def test_service_account_rbac_bounds_what_git_can_do(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    # A Project that lets every cluster-scoped kind through: only its ServiceAccount's RBAC,
    # which every request of the sync impersonates, stands between git and cluster-admin.
    name = sync_project(
        api, namespace, name=f"open-{namespace}", cluster_resources=(("*", "*"),), account="open"
    )
    binding = f"pwned-{uuid.uuid4().hex[:6]}"
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    try:
        gitrepo.commit(
            "dev", "escalate", {"m/crb.yaml": json.dumps(crb), "m/ok.yaml": configmap("ok", {})}
        )
        application(objects, "escalate", gitrepo, "m", namespace, project=name)
        message = wait_for(lambda: condition(objects, "escalate"), 30, "ComparisonError")
        assert "forbidden" in message
        assert f"system:serviceaccount:{namespace}:open" in message
        with pytest.raises(ApiException) as err:
            client.RbacAuthorizationV1Api(api).read_cluster_role_binding(binding)
        assert err.value.status == 404
        assert cm_data(api, namespace, "ok") is None
    finally:
        client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, "projects", name)


def test_missing_project_is_an_invalid_spec(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {})})
    application(objects, "orphan", gitrepo, "m", namespace, project="no-such-project")
    message = wait_for(lambda: condition(objects, "orphan", "InvalidSpecError"), 30, "refused")
    assert "project no-such-project does not exist" in message
    assert cm_data(api, namespace, "a") is None


def test_api_version_bump_updates_and_keeps_the_object(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    def hpa(version: str, max_replicas: int) -> str:
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
        }
        if version == "v1":
            spec["targetCPUUtilizationPercentage"] = 50
        else:
            spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ]
        return json.dumps(
            {
                "apiVersion": f"autoscaling/{version}",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": spec,
            }
        )

    autoscaling = client.AutoscalingV2Api(api)
    sha = gitrepo.commit("dev", "hpa v1", {"m/hpa.yaml": hpa("v1", 2)})
    application(objects, "bump", gitrepo, "m", namespace)
    synced_at(objects, "bump", sha)
    uid = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", namespace).metadata.uid
    sha2 = gitrepo.commit("dev", "hpa v2", {"m/hpa.yaml": hpa("v2", 3)})
    st = synced_at(objects, "bump", sha2)
    live = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert live.metadata.uid == uid
    assert live.spec.max_replicas == 3
    assert [(r["kind"], r["version"]) for r in st["resources"]] == [
        ("HorizontalPodAutoscaler", "v2")
    ]
    assert not any(r.get("requiresPruning") for r in st["resources"])


def test_cascade_delete_only_with_the_resources_finalizer(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev", "two apps", {"a/a.yaml": configmap("a", {}), "b/b.yaml": configmap("b", {})}
    )
    custom = client.CustomObjectsApi(api)
    for name, path, finalizers in [
        ("cascade", "a", ["resources-finalizer.platform.herd-itt.com"]),
        ("argo-cascade", "b", ["resources-finalizer.argocd.argoproj.io"]),
        ("orphaning", "b2", []),
    ]:
        if path == "b2":
            sha = gitrepo.commit("dev", "b2", {"b2/c.yaml": configmap("c", {})})
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Application",
                "metadata": {"name": name, "finalizers": finalizers},
                "spec": {
                    "project": f"p-{namespace}",
                    "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": path},
                    "destination": {"namespace": namespace},
                    "syncPolicy": {"automated": {"prune": True}},
                },
            },
        )
    for name in ("cascade", "argo-cascade", "orphaning"):
        synced_at(objects, name, sha)
    for name in ("cascade", "argo-cascade", "orphaning"):
        objects.delete(PLURAL, name)
    for name in ("cascade", "argo-cascade", "orphaning"):
        objects.wait_gone(PLURAL, name, timeout=60)
    assert cm_data(api, namespace, "a") is None
    assert cm_data(api, namespace, "b") is None
    assert cm_data(api, namespace, "c") == {}  # no finalizer: what it made stays


def test_every_cascade_delete_finishes(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, project: str
) -> None:
    """Argo's /background finalizer lets the Application go once its objects are asked to
    go; a source the Project refuses by now (or a repository gone) no longer holds a cascade
    delete up: deleting what the Application tracks needs its ServiceAccount, not its git."""
    sha = gitrepo.commit(
        "dev", "two apps", {"a/a.yaml": configmap("a", {}), "b/b.yaml": configmap("b", {})}
    )
    custom = client.CustomObjectsApi(api)
    for name, path, finalizer in [
        ("background", "a", "resources-finalizer.argocd.argoproj.io/background"),
        ("refused", "b", "resources-finalizer.argocd.argoproj.io"),
    ]:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Application",
                "metadata": {"name": name, "finalizers": [finalizer]},
                "spec": {
                    "project": project,
                    "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": path},
                    "destination": {"namespace": namespace},
                    "syncPolicy": {"automated": {"prune": True}},
                },
            },
        )
    for name in ("background", "refused"):
        synced_at(objects, name, sha)
    # From now on the Project permits another repository only.
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "projects", project, {"spec": {"sourceRepos": ["https://only.example/*"]}}
    )
    objects.patch(PLURAL, "refused", {"pollInterval": "10s"})  # a reconcile sees the refusal
    wait_for(
        lambda: (
            "InvalidSpecError"
            in [c.get("type") for c in app_status(objects, "refused").get("conditions") or []]
        ),
        60,
        "the source refused",
    )
    for name in ("background", "refused"):
        objects.delete(PLURAL, name)
    for name in ("background", "refused"):
        objects.wait_gone(PLURAL, name, timeout=60)
    assert cm_data(api, namespace, "a") is None
    assert cm_data(api, namespace, "b") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pollInterval": "5s"}, "pollInterval must be at least 10s"),
        ({"project": None}, "spec.project: Required value"),
    ],
)
def test_admission_refuses_a_short_poll_and_a_missing_project(
    objects: Custom, gitrepo: Repo, namespace: str, change: dict[str, Any], message: str
) -> None:
    spec: dict[str, Any] = {
        "project": f"p-{namespace}",
        "source": {"repoURL": gitrepo.url, "path": "m"},
        "destination": {"namespace": namespace},
    }
    spec.update(change)
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(ApiException) as err:
        objects.create("Application", PLURAL, "refused", spec)
    assert err.value.status == 422
    assert message in str(err.value.body)


def test_applications_outside_the_configured_namespaces_are_ignored(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    other = f"x-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        sha = gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {})})
        # Same Project, same source: only the namespace differs.
        application(
            Custom(api, other), "outside", gitrepo, "m", namespace, project=f"p-{namespace}"
        )
        application(objects, "inside", gitrepo, "m", namespace)
        synced_at(objects, "inside", sha)
        # The timer has ticked for both by now (same tick, same poll interval).
        assert "status" not in Custom(api, other).get(PLURAL, "outside")
    finally:
        core.delete_namespace(other)


def test_credentials_only_from_labelled_secrets_and_only_for_their_url(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {})})
    core = client.CoreV1Api(api)
    # Any Secret of the namespace, named by an Application: not repository credentials.
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"),
            string_data={"username": "u", "password": "p", "url": gitrepo.url},
        ),
    )
    objects.create(
        "Application",
        PLURAL,
        "creds",
        {
            "project": f"p-{namespace}",
            "source": {
                "repoURL": gitrepo.url,
                "targetRevision": "dev",
                "path": "m",
                "credentials": {"secretName": "creds"},
            },
            "destination": {"namespace": namespace},
            "syncPolicy": {"automated": {}},
        },
    )
    # The operator reads Secrets only where its chart grants it: not in an Application
    # namespace that config.applicationNamespaces names by a glob (t-*) alone.
    assert "credentials Secret creds: Forbidden" in wait_for(
        lambda: condition(objects, "creds"), 30, "no access to the namespace's Secrets"
    )
    # As for a namespace listed by name: the chart's own Role and RoleBinding.
    for doc in template(
        "herd-operator",
        "-n",
        PROGRAMS_NAMESPACE,
        "--set",
        "fullnameOverride=herd-operator",
        "--set",
        f"config.applicationNamespaces={{{namespace}}}",
        "--show-only",
        "templates/role-repository-secrets.yaml",
    ):
        if doc["metadata"]["namespace"] == namespace:
            utils.create_from_dict(api, doc)
    wait_for(
        lambda: (
            "lacks the label platform.herd-itt.com/secret-type=repository"
            in (condition(objects, "creds") or "")
        ),
        30,
        "unlabelled Secret refused",
    )
    # Labelled, but for another host: the password is never sent to this one.
    core.patch_namespaced_secret(
        "creds",
        namespace,
        {
            "metadata": {"labels": {"platform.herd-itt.com/secret-type": "repository"}},
            "stringData": {"url": "https://git.example.test/other"},
        },
    )
    wait_for(
        lambda: (
            "is for https://git.example.test/other, not for" in (condition(objects, "creds") or "")
        ),
        30,
        "credentials for another URL refused",
    )
    assert cm_data(api, namespace, "a") is None
