"""The live-state cache, incremental compare and self-heal from watch events, through the real
parts: the cache's informers against the API server (as a Project's ServiceAccount), and the
operator process syncing Applications whose poll interval is an hour, so that only watch
events can explain how fast they react. The cache must never make a sync wrong."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, TRACKING_ANNOTATION, TRACKING_LABEL, VERSION
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitrepo import Repo
from herd_operator.gitops.cache import Informer, InformerKey, LiveCache
from herd_operator.gitops.engine import Application, Engine
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.incremental import Memo
from herd_operator.gitops.plan import Key, tracking_id

from .applications import app_status, application, cm_data, configmap, synced_at
from .helpers import Custom, sync_project, wait_for

PLURAL = "applications"


@pytest.fixture
def project(api: ApiClient, namespace: str, crds: None) -> Iterator[str]:
    name = sync_project(api, namespace)
    yield name
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, "projects", name)


def user(namespace: str, account: str = "sync") -> str:
    return f"system:serviceaccount:{namespace}:{account}"


def another_project(
    api: ApiClient,
    name: str,
    namespace: str,
    destinations: tuple[str, ...] = (),
    cluster_resources: tuple[tuple[str, str], ...] = (),
) -> None:
    """A second Project whose Applications act as the test namespace's `sync` account."""
    client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP,
        VERSION,
        "projects",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Project",
            "metadata": {"name": name},
            "spec": {
                "sourceRepos": ["*"],
                "sourceNamespaces": [namespace],
                "destinations": [{"namespace": ns} for ns in (namespace, *destinations)],
                "clusterResourceWhitelist": [{"group": g, "kind": k} for g, k in cluster_resources],
                "destinationServiceAccounts": [
                    {"namespace": "*", "defaultServiceAccount": f"{namespace}:sync"}
                ],
            },
        },
    )


# -- the cache itself, in this process, against the API server ------------------------------
@pytest.mark.usefixtures("project")
def test_informer_lists_watches_and_survives_a_cut_watch(api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(3):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"c{i}"}})
    events: list[tuple[str, str]] = []
    cache = LiveCache(api.configuration, sync_timeout=30)
    cache.listen(
        lambda _k, kind, old, new: events.append((kind, (new or old or {})["metadata"]["name"]))
    )
    key = InformerKey(user(namespace), "v1", "ConfigMap", namespace)
    try:
        informer = cache.informer(key, f"/api/v1/namespaces/{namespace}/configmaps")
        assert informer.usable, informer.error
        assert {"c0", "c1", "c2"} <= set(informer.objects)
        assert "managedFields" not in informer.get("c0")["metadata"]  # type: ignore[index]
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "c3"}})
        wait_for(lambda: informer.get("c3"), 30, "a new object seen through the watch")
        # The watch is cut and resumes from a resourceVersion long gone (the API server
        # replays the state from its watch cache; where it answers 410: the next test).
        informer.expire()
        wait_for(lambda: informer.resource_version != "1", 30, "watching again")
        core.delete_namespaced_config_map("c1", namespace)
        wait_for(lambda: informer.get("c1") is None, 30, "a deletion after the relist")
        assert ("DELETED", "c1") in events
        assert ("ADDED", "c3") in events
        assert informer.usable
    finally:
        cache.stop()


def podtemplate(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    }


def test_a_watch_below_the_compacted_revision_relists(uncached_plane: ControlPlane) -> None:
    """The real 410: etcd compacted past the informer's resourceVersion, its watch answers
    Gone, and the informer lists again and goes on watching from the new list."""
    with config.new_client_from_config(config_file=str(uncached_plane.kubeconfig)) as api:
        core = client.CoreV1Api(api)
        for i in range(2):
            core.create_namespaced_pod_template("default", podtemplate(f"p{i}"))
        cache = LiveCache(api.configuration, sync_timeout=30)
        try:
            informer = cache.informer(
                InformerKey("", "v1", "PodTemplate", "default"),
                "/api/v1/namespaces/default/podtemplates",
            )
            assert informer.usable, informer.error
            core.create_namespaced_pod_template("default", podtemplate("p2"))
            wait_for(lambda: informer.get("p2"), 30, "a new object seen through the watch")
            revision = int(
                core.read_namespaced_pod_template("p2", "default").metadata.resource_version
            )
            compacted = httpx.post(
                f"{uncached_plane.etcd}/v3/kv/compaction",
                json={"revision": revision, "physical": True},
                timeout=30,
            )
            compacted.raise_for_status()
            assert informer.gone == 0
            informer.expire()  # resume from resourceVersion 1, far below the compaction
            wait_for(lambda: informer.gone == 1, 30, "the API server's 410 Gone")
            wait_for(lambda: int(informer.resource_version or 0) >= revision, 30, "relisted")
            assert set(informer.objects) == {"p0", "p1", "p2"}
            core.delete_namespaced_pod_template("p0", "default")
            wait_for(lambda: informer.get("p0") is None, 30, "watching again after the relist")
            assert informer.usable and informer.gone == 1
        finally:
            cache.stop()


@pytest.mark.usefixtures("project")
def test_informers_see_only_what_their_identity_may_list(
    api: ApiClient, namespace: str, make_namespace: Any
) -> None:
    """The cache never widens what an Application can see: it lists as the Project's
    ServiceAccount, which may list its own namespace but not another, nor cluster roles."""
    other = make_namespace("t-other")
    client.CoreV1Api(api).create_namespaced_config_map(other, {"metadata": {"name": "secret"}})
    cache = LiveCache(api.configuration, sync_timeout=30)
    try:
        own = cache.informer(
            InformerKey(user(namespace), "v1", "ConfigMap", namespace),
            f"/api/v1/namespaces/{namespace}/configmaps",
        )
        assert own.usable
        foreign = cache.informer(
            InformerKey(user(namespace), "v1", "ConfigMap", other),
            f"/api/v1/namespaces/{other}/configmaps",
        )
        assert not foreign.usable and foreign.error and foreign.error.startswith("403")
        assert foreign.get("secret") is None
        roles = cache.informer(
            InformerKey(user(namespace), "rbac.authorization.k8s.io/v1", "ClusterRole", ""),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        )
        assert not roles.usable and not roles.objects
    finally:
        cache.stop()


@pytest.mark.usefixtures("project")
def test_the_cache_holds_only_tracked_objects_yet_sees_the_others(
    api: ApiClient, namespace: str, gitrepo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 31 N8: objects of the destination namespace that no Application tracks (here 20
    ConfigMaps of 200 KB) are never held by the cache; yet an object made by hand with a name
    git has is seen by the compare and adopted by the sync, pruning still finds what an
    earlier Herd tracked (its annotation without the label), and an object whose label was
    removed by hand is still seen (and labelled again)."""
    core = client.CoreV1Api(api)
    blob = "x" * 200_000
    for i in range(20):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"foreign-{i}"}, "data": {"blob": blob}}
        )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "b"}, "data": {"k": "hand"}})
    old = Key("", "v1", "ConfigMap", namespace, "old")
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "old",
                "annotations": {TRACKING_ANNOTATION: tracking_id(namespace, "small", old)},
            }
        },
    )
    # More new objects than GETs_OVER_A_LIST: the compare lists names instead of a GET each.
    new = {f"new-{i:02d}" for i in range(20)}
    gitrepo.commit(
        "dev",
        "many",
        {f"m/{n}.yaml": configmap(n, {"k": "1"}) for n in ("a", "b", *new)},
    )
    live = LiveCache(api.configuration, sync_timeout=30)
    engine = Engine(
        api,
        RepoCache(root=tmp_path / "git"),
        Path(shutil.which("helm") or "helm"),
        local_sources=True,
        live=live,
        memo=Memo(600),
    )
    spec = {
        "project": f"p-{namespace}",
        "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "m"},
        "destination": {"namespace": namespace},
    }
    app = Application("small", namespace, spec, [old.as_status()])
    tracked = {"a", "b", *new}
    listed: list[set[str]] = []
    names = Informer.names
    monkeypatch.setattr(Informer, "names", lambda i: listed.append(names(i)) or listed[-1])
    try:
        comparison = engine.compare(app)
        lives = {i.key.name: i.live for i in comparison.items}
        assert lives["a"] is None and lives["new-00"] is None
        assert lives["b"] is not None and lives["b"]["data"] == {"k": "hand"}  # seen, not cached
        assert [k.name for k, _ in comparison.prune] == ["old"]  # found, though not labelled
        assert len(listed) == 1 and {"b", "old", "foreign-0"} <= listed[0]  # names, no GET each
        engine.sync(app, comparison, prune=True)
        assert cm_data(api, namespace, "b") == {"k": "1"}  # adopted
        assert cm_data(api, namespace, "old") is None  # pruned

        def held() -> set[str]:
            return {n for i in live.informers.values() for n in i.objects}

        wait_for(lambda: held() == tracked, 30, f"only what the sync applied cached: {held()}")
        count, size = live.held()
        assert count == len(tracked) and size < 50_000, (count, size)
        # The next compare reads them all from the cache, and all are in sync.
        app.inventory = [i.key.as_status() for i in comparison.items]
        assert engine.compare(app).in_sync

        # The label removed by hand: the object leaves the cache, a GET still sees it.
        core.patch_namespaced_config_map(
            "b", namespace, {"metadata": {"labels": {TRACKING_LABEL: None}}}
        )
        wait_for(lambda: "b" not in held(), 30, "b out of the label-filtered watch")
        drifted = engine.compare(app)
        (b,) = [i for i in drifted.items if i.key.name == "b"]
        assert b.live is not None and not b.in_sync and not drifted.prune
        assert len(listed) == 1  # one object missing: a GET
        engine.sync(app, drifted, prune=True)
        wait_for(lambda: "b" in held(), 30, "b labelled and cached again")
    finally:
        live.stop()


# -- the operator: self-heal from watch events, and syncs the cache must not get wrong ------
pytestmark_operator = pytest.mark.usefixtures("live_operator", "project")


def labels(api: ApiClient, namespace: str, name: str) -> dict[str, str]:
    meta = client.CoreV1Api(api).read_namespaced_config_map(name, namespace).metadata
    return dict(meta.labels or {})


@pytestmark_operator
def test_hand_edits_and_deletions_are_reverted_from_watch_events(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev", "two", {"m/a.yaml": configmap("a", {"k": "1"}), "m/b.yaml": configmap("b", {})}
    )
    # An hour between polls: only a watch event can bring the Application back in time.
    application(objects, "heal", gitrepo, "m", namespace, poll="1h")
    synced_at(objects, "heal", sha)
    core = client.CoreV1Api(api)
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "hand"}})
    wait_for(lambda: cm_data(api, namespace, "a") == {"k": "1"}, 20, "hand edit reverted")
    core.delete_namespaced_config_map("b", namespace)
    wait_for(lambda: cm_data(api, namespace, "b") == {}, 20, "deleted object recreated")
    # Another field manager takes a field we own (server-side apply, forced).
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "x"}}
    )
    api.call_api(
        *api.param_serialize(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/a",
            query_params=[("fieldManager", "someone-else"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml"},
            body=body,
            auth_settings=["BearerToken"],
        )
    ).read()
    wait_for(lambda: cm_data(api, namespace, "a") == {"k": "1"}, 20, "other manager reverted")
    # Its tracking label removed: the label-filtered watch sees it leave (a DELETED event),
    # the compare reads it with a GET, and selfHeal labels it again.
    assert TRACKING_LABEL in labels(api, namespace, "a")
    core.patch_namespaced_config_map(
        "a", namespace, {"metadata": {"labels": {TRACKING_LABEL: None}}}
    )
    wait_for(lambda: TRACKING_LABEL in labels(api, namespace, "a"), 20, "label put back")
    st = app_status(objects, "heal")
    assert st["sync"]["status"] == "Synced"


@pytestmark_operator
def test_drift_without_self_heal_is_reported_from_events(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit("dev", "a", {"m/a.yaml": configmap("a", {"k": "1"})})
    application(objects, "report", gitrepo, "m", namespace, poll="1h", self_heal=False)
    synced_at(objects, "report", sha)
    client.CoreV1Api(api).patch_namespaced_config_map("a", namespace, {"data": {"k": "hand"}})
    wait_for(
        lambda: app_status(objects, "report")["sync"]["status"] == "OutOfSync",
        20,
        "OutOfSync from the watch event",
    )
    assert cm_data(api, namespace, "a") == {"k": "hand"}
    # Undone by hand: Synced again, also from the event.
    client.CoreV1Api(api).patch_namespaced_config_map("a", namespace, {"data": {"k": "1"}})
    wait_for(
        lambda: app_status(objects, "report")["sync"]["status"] == "Synced", 20, "Synced again"
    )


@pytestmark_operator
def test_two_applications_sharing_a_kind_prune_only_their_own(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str
) -> None:
    sha = gitrepo.commit(
        "dev",
        "two apps",
        {
            "one/a.yaml": configmap("one-a", {}),
            "one/b.yaml": configmap("one-b", {}),
            "two/a.yaml": configmap("two-a", {}),
            "two/b.yaml": configmap("two-b", {}),
        },
    )
    application(objects, "one", gitrepo, "one", namespace)
    application(objects, "two", gitrepo, "two", namespace)
    synced_at(objects, "one", sha)
    synced_at(objects, "two", sha)
    client.CoreV1Api(api).create_namespaced_config_map(namespace, {"metadata": {"name": "nobodys"}})
    sha2 = gitrepo.commit("dev", "one drops b", {}, remove=("one/b.yaml",))
    st = synced_at(objects, "one", sha2)
    wait_for(lambda: cm_data(api, namespace, "one-b") is None, 30, "one-b pruned")
    synced_at(objects, "two", sha2)
    for name in ("one-a", "two-a", "two-b", "nobodys"):
        assert cm_data(api, namespace, name) is not None, name
    assert sorted(r["name"] for r in st["resources"]) == ["one-a"]
    assert sorted(r["name"] for r in app_status(objects, "two")["resources"]) == [
        "two-a",
        "two-b",
    ]


@pytest.fixture
def cluster_rights(api: ApiClient, namespace: str) -> Iterator[str]:
    """The test's ServiceAccount may also manage CRDs of one test group, their custom
    resources, and namespaces (a ClusterRole, removed afterwards)."""
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    rbac = client.RbacAuthorizationV1Api(api)
    name = f"cache-test-{namespace}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["apiextensions.k8s.io"],
                    "resources": ["customresourcedefinitions"],
                    "verbs": ["*"],
                },
                {"apiGroups": [group], "resources": ["*"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]},
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "sync", "namespace": namespace}],
        }
    )
    yield group
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


@pytestmark_operator
def test_a_crd_and_its_custom_resources_in_one_sync(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster_rights: str
) -> None:
    group = cluster_rights
    another_project(
        api,
        f"crd-{namespace}",
        namespace,
        cluster_resources=(("apiextensions.k8s.io", "CustomResourceDefinition"),),
    )
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }

    def widget(size: int) -> str:
        return json.dumps(
            {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": size},
            }
        )

    try:
        sha = gitrepo.commit(
            "dev", "crd and cr", {"m/crd.yaml": json.dumps(crd), "m/w.yaml": widget(1)}
        )
        application(objects, "crds", gitrepo, "m", namespace, project=f"crd-{namespace}")
        st = synced_at(objects, "crds", sha, timeout=90)
        assert sorted(r["kind"] for r in st["resources"]) == ["CustomResourceDefinition", "Widget"]
        widgets = client.CustomObjectsApi(api)
        live = widgets.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w")
        assert live["spec"] == {"size": 1}  # type: ignore[index]
        # The new kind is watched now: a hand edit of the custom resource is reverted.
        widgets.patch_namespaced_custom_object(
            group, "v1", namespace, "widgets", "w", {"spec": {"size": 7}}
        )
        wait_for(
            lambda: (
                widgets.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w")[
                    "spec"
                ]["size"]
                == 1
            ),
            30,
            "custom resource edit reverted",
        )
    finally:
        objects.delete(PLURAL, "crds")
        client.CustomObjectsApi(api).delete_cluster_custom_object(
            GROUP, VERSION, "projects", f"crd-{namespace}"
        )
        try:
            client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"widgets.{group}")
        except ApiException as err:
            if err.status != 404:
                raise


@pytestmark_operator
def test_a_namespace_deleted_and_recreated(
    objects: Custom, api: ApiClient, gitrepo: Repo, namespace: str, cluster_rights: str
) -> None:
    target = f"t-dest-{uuid.uuid4().hex[:8]}"
    another_project(api, f"ns-{namespace}", namespace, destinations=(target,))
    core = client.CoreV1Api(api)
    sha = gitrepo.commit("dev", "cm", {"m/a.yaml": configmap("a", {"k": "1"})})
    objects.create(
        "Application",
        PLURAL,
        "ns",
        {
            "project": f"ns-{namespace}",
            "source": {"repoURL": gitrepo.url, "targetRevision": "dev", "path": "m"},
            "destination": {"namespace": target},
            "pollInterval": "1h",
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
                "retry": {"backoff": {"duration": "1s", "factor": 1}},
            },
        },
    )
    try:
        synced_at(objects, "ns", sha, timeout=60)
        assert cm_data(api, target, "a") == {"k": "1"}
        before = core.read_namespace(target).metadata.uid
        core.delete_namespace(target)

        seen: list[object] = []

        def original_gone() -> bool:
            # Self-heal may make the namespace again before a poll sees the gap: the one we
            # deleted is gone when the name is free or held by a namespace with another uid.
            try:
                ns = core.read_namespace(target)
            except ApiException as err:
                if err.status == 404:
                    return True
                raise
            seen[:] = [ns.status.conditions]  # why it is still terminating, if it hangs
            return bool(ns.metadata.uid != before)

        try:
            wait_for(original_gone, 90, "namespace gone")
        except AssertionError as err:
            raise AssertionError(f"{err}; its conditions: {seen}") from None
        # Its objects' deletion events wake the Application; it makes both again.
        wait_for(lambda: cm_data(api, target, "a") == {"k": "1"}, 60, "namespace and object back")
    finally:
        objects.delete(PLURAL, "ns")
        client.CustomObjectsApi(api).delete_cluster_custom_object(
            GROUP, VERSION, "projects", f"ns-{namespace}"
        )
        try:
            core.delete_namespace(target)
        except ApiException as err:
            if err.status != 404:
                raise
