"""Test helpers: condition waits, custom objects, events, the programs as real processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, VERSION
from herd_devkit.stack import HERD, Program

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "charts" / "herd-operator" / "crds"


def wait_for(fn: Callable[[], T], timeout: float = 60, message: str = "condition") -> T:
    """Poll `fn` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ApiException as err:
            last = err
            if err.status != 404:
                raise
        if last and not isinstance(last, ApiException):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}; last: {last!r}")
        time.sleep(0.2)


def read_or_none(read: Callable[..., T], *args: Any) -> T | None:
    """`read(*args)` (a client's read_namespaced_*), None where the object does not exist."""
    try:
        return read(*args)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


class Custom:
    """Our custom objects in one namespace."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, kind: str, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        return self.api.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, plural, body
        )

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, plural, name
        )

    def patch(self, plural: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, plural, name, {"spec": dict(spec)}
        )

    def delete(self, plural: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def exists(self, plural: str, name: str) -> bool:
        try:
            self.get(plural, name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def condition(self, plural: str, name: str, type_: str) -> dict[str, Any]:
        obj = self.get(plural, name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def wait_condition(
        self,
        plural: str,
        name: str,
        type_: str = "Ready",
        status: str = "True",
        reason: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            cond = self.condition(plural, name, type_)
            if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
                return cond
            return None

        return wait_for(ok, timeout, f"{plural}/{name} {type_}={status} {reason or ''}")

    def wait_gone(self, plural: str, name: str, timeout: float = 60) -> None:
        wait_for(lambda: not self.exists(plural, name), timeout, f"{plural}/{name} deleted")


def events(api: ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of every Event about object `name`."""
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return [(e.type, e.reason, e.message) for e in items]


# The Herd programs as real processes: devkit's one process wrapper (Program), with each
# program's command and health port variable.
HerdProcess = Program
__all__ = ["HERD", "HerdProcess"]


@dataclass(kw_only=True)
class OperatorProcess(Program):
    args: tuple[str, ...] = ("operator", "run", "--verbose")
    port_variable: str = "HERD_HEALTH_PORT"


@dataclass(kw_only=True)
class WorkerProcess(Program):
    args: tuple[str, ...] = ("worker", "run")
    port_variable: str = "HERD_WORKER_PORT"


@dataclass(kw_only=True)
class ApiProcess(Program):
    args: tuple[str, ...] = ("api", "run", "--host", "127.0.0.1")
    port_variable: str = "HERD_API_PORT"


def queue_empty(sqs: Any, url: str) -> bool:
    """Whether the SQS queue at `url` holds no message, visible or in flight."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"]
        == attrs["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )


def same_process(proc: Program) -> Callable[[], bool]:
    """A check that `proc` is still the process it is now: running, not died and restarted."""
    popen = proc.popen
    assert popen is not None
    pid = popen.pid
    return lambda: proc.running() and popen.pid == pid and popen.poll() is None


def sync_project(
    api: ApiClient,
    namespace: str,
    *,
    name: str | None = None,
    destinations: tuple[str, ...] = (),
    cluster_resources: tuple[tuple[str, str], ...] = (),
    source_repos: tuple[str, ...] = ("*",),
    account: str = "sync",
    source_namespaces: tuple[str, ...] | None = None,
) -> str:
    """A Project for the Applications of `namespace` (its sourceNamespaces; default, that
    namespace alone): they act as ServiceAccount `account` there, which may do what the
    built-in `admin` role allows in that namespace plus Herd's own kinds. Returns the
    Project's name (deleted with the namespace's test by the caller)."""
    name = name or f"p-{namespace}"
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
    )
    subject = client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)
    for ns in (namespace, *destinations):
        rbac.create_namespaced_role(
            ns,
            client.V1Role(
                metadata=client.V1ObjectMeta(name=f"{account}-herd"),
                rules=[client.V1PolicyRule(api_groups=[GROUP], resources=["*"], verbs=["*"])],
            ),
        )
        for role_kind, role in (("ClusterRole", "admin"), ("Role", f"{account}-herd")):
            rbac.create_namespaced_role_binding(
                ns,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name=f"{account}-{role}"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind=role_kind, name=role
                    ),
                    subjects=[subject],
                ),
            )
    spec = {
        "sourceRepos": list(source_repos),
        "sourceNamespaces": list(
            source_namespaces if source_namespaces is not None else [namespace]
        ),
        "destinations": [{"namespace": ns} for ns in (namespace, *destinations)],
        "clusterResourceWhitelist": [{"group": g, "kind": k} for g, k in cluster_resources],
        "destinationServiceAccounts": [
            {"namespace": namespace, "defaultServiceAccount": account},
            *(
                {"namespace": ns, "defaultServiceAccount": f"{namespace}:{account}"}
                for ns in destinations
            ),
        ],
    }
    objects = client.CustomObjectsApi(api)
    try:
        objects.delete_cluster_custom_object(GROUP, VERSION, "projects", name)
    except ApiException as err:
        if err.status != 404:
            raise
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "projects",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Project",
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    return name


def may(
    api: ApiClient,
    namespace: str,
    account: str,
    verb: str,
    group: str,
    resource: str,
    where: str = "",
) -> bool:
    """Whether ServiceAccount namespace/account may `verb` `resource` (`name/subresource`)
    in `where` (empty: cluster-wide), as the API server's SubjectAccessReview answers."""
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{namespace}:{account}",
                groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb,
                    group=group,
                    resource=resource.split("/")[0],
                    subresource=resource.partition("/")[2] or None,
                    namespace=where or None,
                ),
            )
        )
    )
    return bool(review.status and review.status.allowed)
