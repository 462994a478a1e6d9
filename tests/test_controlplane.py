"""The embedded control plane is a real Kubernetes: CRDs, watches, RBAC, garbage collection
and namespace deletion all behave as in a cluster."""

from __future__ import annotations

import dataclasses
import signal
import threading
import uuid
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.process import wait_until
from herd_devkit.settings import get_settings

from .conftest import Cluster

CRD_GROUP = "fixtures.herd-itt.com"


def _crd(plural: str) -> dict[str, object]:
    kind = plural.capitalize()[:-1]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
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
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def _exists(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def test_version_is_the_pinned_one(api: ApiClient, cluster: Cluster) -> None:
    if cluster.embedded is None:
        pytest.skip("existing cluster: any version")
    info = client.VersionApi(api).get_code()
    assert info.git_version.startswith("v1.36."), info.git_version
    assert info.major == "1"


def test_crd_create_watch_delete(api: ApiClient, namespace: str) -> None:
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(_crd(plural))
    try:
        name = f"{plural}.{CRD_GROUP}"

        def established() -> bool:
            crd = ext.read_custom_resource_definition(name)
            return any(
                c.type == "Established" and c.status == "True"
                for c in (crd.status.conditions or [])
            )

        assert wait_until(established, 30)
        custom = client.CustomObjectsApi(api)

        # Watch from a thread, then create and delete: the watch sees both events.
        seen: list[tuple[str, str]] = []

        def watcher() -> None:
            w = watch.Watch()
            for event in w.stream(
                custom.list_namespaced_custom_object,
                CRD_GROUP,
                "v1",
                namespace,
                plural,
                timeout_seconds=30,
            ):
                seen.append((event["type"], event["object"]["metadata"]["name"]))
                if event["type"] == "DELETED":
                    w.stop()

        thread = threading.Thread(target=watcher, daemon=True)
        thread.start()
        body = {
            "apiVersion": f"{CRD_GROUP}/v1",
            "kind": plural.capitalize()[:-1],
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        custom.create_namespaced_custom_object(CRD_GROUP, "v1", namespace, plural, body)
        # A watch without resourceVersion replays existing objects as ADDED, so this holds
        # even if the stream opened after the create; deleting waits for it.
        assert wait_until(lambda: ("ADDED", "w1") in seen, 30)
        assert (
            custom.get_namespaced_custom_object(CRD_GROUP, "v1", namespace, plural, "w1")["spec"][
                "size"
            ]
            == 3
        )

        # The structural schema is enforced by the real API server.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        with pytest.raises(ApiException) as err:
            custom.create_namespaced_custom_object(CRD_GROUP, "v1", namespace, plural, bad)
        assert err.value.status == 422

        custom.delete_namespaced_custom_object(CRD_GROUP, "v1", namespace, plural, "w1")
        thread.join(30)
        assert ("DELETED", "w1") in seen
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{CRD_GROUP}")


def test_garbage_collection_cascades_to_dependents(api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])),
    )
    core.delete_namespaced_config_map("owner", namespace)
    # Only kube-controller-manager's garbage collector removes the dependent.
    assert wait_until(
        lambda: not _exists(core.read_namespaced_config_map, "dependent", namespace), 60
    )


def test_namespace_deletion_removes_its_objects(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"t-del-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"k": "v"})
    )
    core.delete_namespace(name)
    # Without the namespace controller it would stay Terminating forever.
    assert wait_until(lambda: not _exists(core.read_namespace, name), 90)


def test_rbac_is_enforced_for_service_accounts(
    api: ApiClient, namespace: str, cluster: Cluster
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token

    conf = client.Configuration()
    conf.host = api.configuration.host
    conf.ssl_ca_cert = api.configuration.ssl_ca_cert
    conf.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(conf) as as_reader:
        reader = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as err:
            reader.list_namespaced_config_map(namespace)
        assert err.value.status == 403

        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="cm-reader"),
                rules=[
                    client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="cm-reader"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )

        def allowed() -> bool:
            try:
                reader.list_namespaced_config_map(namespace)
            except ApiException as e:
                if e.status == 403:
                    return False
                raise
            return True

        assert wait_until(allowed, 30)
        with pytest.raises(ApiException) as err:
            reader.list_namespaced_secret(namespace)
        assert err.value.status == 403


def test_a_stop_lets_the_api_server_shut_down_before_etcd(tmp_path: Path) -> None:
    """etcd stops last: an API server whose etcd was stopped with it hung in its graceful
    shutdown until the SIGKILL, 15 s into every `make down` and every test's cluster stop."""
    if get_settings().use_existing_cluster:
        pytest.skip("embedded clusters only")
    plane = dataclasses.replace(
        ControlPlane.named("stops", with_controller_manager=False), root=tmp_path / "stops"
    )
    plane.start()
    try:
        popens = {r.name: plane._popens[r.pid] for r in plane.processes()}
    finally:
        plane.stop()
    assert set(popens) == {"etcd", "kube-apiserver"}
    # Each ended by the SIGTERM (the API server's own clean exit), not the SIGKILL after it.
    codes = {name: p.returncode for name, p in popens.items()}
    assert codes == {"etcd": -signal.SIGTERM, "kube-apiserver": 0}
