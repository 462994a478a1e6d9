"""The sync's batched server-side apply (`Applier.apply_each`, many requests on one event
loop), against the real API server: answers in order, each refusal where it belongs, the
ApiClient's identity and impersonation carried on every request, no exception for a server
that does not answer."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from herd_devkit.local.process import free_port
from herd_operator.gitops.kubeapply import Applier, ApplyError


def configmap(namespace: str, name: str, value: str = "v") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": value},
    }


def names(core: client.CoreV1Api, namespace: str) -> set[str]:
    return {
        cm.metadata.name
        for cm in core.list_namespaced_config_map(namespace).items
        if cm.metadata.name != "kube-root-ca.crt"
    }


def test_apply_each_answers_in_order_and_refuses_only_the_bad_ones(
    api: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    objs = [
        configmap(namespace, "a"),
        configmap(namespace, "Not-A-Name"),  # the API server refuses it (422)
        {"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "n"}},
        *[configmap(namespace, f"c{i}", str(i)) for i in range(20)],
    ]
    applier = Applier(api)

    dry = applier.apply_each(objs, dry_run=True, concurrency=8)
    assert names(core, namespace) == set(), "a dry run wrote something"
    assert isinstance(dry[1], ApplyError) and "Not-A-Name" in str(dry[1])
    assert isinstance(dry[2], ApplyError) and "no kind Nothing" in str(dry[2])
    good = [answer for i, answer in enumerate(dry) if i not in (1, 2)]
    assert [a["metadata"]["name"] for a in good] == ["a", *[f"c{i}" for i in range(20)]]  # type: ignore[index]
    assert [a["data"]["k"] for a in good[1:]] == [str(i) for i in range(20)]  # type: ignore[index]

    real = applier.apply_each([o for i, o in enumerate(objs) if i not in (1, 2)], concurrency=8)
    assert not [a for a in real if isinstance(a, ApplyError)]
    assert names(core, namespace) == {"a", *[f"c{i}" for i in range(20)]}
    managers = {f["manager"] for f in real[0]["metadata"]["managedFields"]}  # type: ignore[index]
    assert managers == {applier.field_manager}


def test_apply_each_carries_the_impersonated_identity(api: ApiClient, namespace: str) -> None:
    """Every request of a batch impersonates the ApiClient's user: `default` of a fresh
    namespace may create nothing, however much the caller itself may."""
    cfg = copy.copy(api.configuration)
    impersonating = client.ApiClient(configuration=cfg)
    impersonating.set_default_header(  # type: ignore[no-untyped-call]
        "Impersonate-User", f"system:serviceaccount:{namespace}:default"
    )
    answers = Applier(impersonating).apply_each(
        [configmap(namespace, f"x{i}") for i in range(5)], concurrency=4
    )
    assert all(isinstance(a, ApplyError) and "forbidden" in str(a) for a in answers), answers
    assert names(client.CoreV1Api(api), namespace) == set()


def test_apply_each_without_an_answer_reports_each_object(api: ApiClient, namespace: str) -> None:
    applier = Applier(api)
    applier.resource("v1", "ConfigMap")  # known before the server goes away
    cfg = copy.copy(api.configuration)
    cfg.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    applier.api = client.ApiClient(configuration=cfg)
    answers = applier.apply_each([configmap(namespace, f"y{i}") for i in range(3)], concurrency=2)
    assert all(isinstance(a, ApplyError) and "no answer" in str(a) for a in answers), answers


def test_apply_each_from_inside_an_event_loop(api: ApiClient, namespace: str) -> None:
    """Called where an event loop already runs (no second loop there): the same answers."""
    objs = [configmap(namespace, f"z{i}") for i in range(4)]

    async def inside() -> list[Any]:
        return Applier(api).apply_each(objs, concurrency=2)

    answers = asyncio.run(inside())
    assert [a["metadata"]["name"] for a in answers] == [f"z{i}" for i in range(4)]
