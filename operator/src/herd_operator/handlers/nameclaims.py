"""Cluster-wide claims on AWS names that no tag can mark (SES templates): one Lease per name
in the operator's namespace, held by the resource that may make and change the AWS object.

A status field alone cannot decide who owns a name: two resources in two namespaces that
both find no template both write their claim, and SES's AlreadyExists tells the loser nothing
about whether its own create landed before a crash. Creating a Lease is atomic, so of two
resources asking for one name at once exactly one holds it; the other is refused before any
AWS call, and every later pass (reconcile, drift repair, deletion) asks the Lease again.
"""

from __future__ import annotations

import hashlib

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd_core import kube
from herd_core.constants import GROUP, VERSION
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings

LABEL = f"{GROUP}/name-claim"  # the kind whose AWS names the Lease claims
NAME = f"{GROUP}/aws-name"  # the AWS name itself (a Lease's name is its hash)


def lease_name(kind: str, aws_name: str, scope: str) -> str:
    """A DNS-1123 name for (kind, scope, AWS name): scope is where the name is unique (the
    region for SES templates)."""
    digest = hashlib.sha256(f"{scope}/{aws_name}".encode()).hexdigest()[:40]
    return f"{kind.lower()}-{digest}"


def _holder(lease: client.V1Lease) -> str:
    return (lease.spec.holder_identity if lease.spec else None) or ""


def _identity(obj: Object) -> str:
    return f"{obj.namespace}/{obj.name}/{obj.uid}"


def _alive(obj: Object, holder: str) -> bool:
    """Whether the resource named by `holder` (namespace/name/uid) still exists."""
    namespace, _, rest = holder.partition("/")
    name, _, uid = rest.partition("/")
    try:
        found = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, obj.plural, name
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return bool(found["metadata"]["uid"] == uid)  # type: ignore[index]


def claim(obj: Object, aws_name: str, scope: str, settings: Settings) -> tuple[str, str] | None:
    """Hold the claim on `aws_name` for `obj`; None when it is (now) obj's, else the
    (namespace, name) of the live resource that holds it. A claim whose holder is gone (a
    deletion that died between AWS and the Lease) passes to `obj`."""
    leases = client.CoordinationV1Api(kube.api_client())
    name, namespace = lease_name(obj.kind, aws_name, scope), settings.operator_namespace
    mine = _identity(obj)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(
            name=name, labels={LABEL: obj.kind.lower()}, annotations={NAME: aws_name}
        ),
        spec=client.V1LeaseSpec(holder_identity=mine),
    )
    for _ in range(3):  # the Lease changed between our read and our write: ask again
        try:
            have = leases.read_namespaced_lease(name, namespace)  # held already: one call
        except ApiException as err:
            if err.status != 404:
                raise
            try:
                leases.create_namespaced_lease(namespace, lease)
                return None
            except ApiException as err:
                if err.status != 409:
                    raise
                continue  # another made it first
        holder = _holder(have)
        if holder == mine:
            return None
        if _alive(obj, holder):
            namespace_, _, rest = holder.partition("/")
            return namespace_, rest.partition("/")[0]
        # The holder is gone: take its claim, under the resourceVersion we read.
        have.spec = client.V1LeaseSpec(holder_identity=mine)
        try:
            leases.replace_namespaced_lease(name, namespace, have)
            return None
        except ApiException as err:
            if err.status not in (404, 409):
                raise
    raise RuntimeError(f"the claim on {aws_name} changed hands three times; retrying")


def holds(obj: Object, aws_name: str, scope: str, settings: Settings) -> bool | None:
    """True when obj holds the claim, False when another does, None when nobody does."""
    try:
        have = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
            lease_name(obj.kind, aws_name, scope), settings.operator_namespace
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return _holder(have) == _identity(obj)


def release(obj: Object, aws_name: str, scope: str, settings: Settings) -> None:
    """Give the claim up if obj holds it (never another's)."""
    leases = client.CoordinationV1Api(kube.api_client())
    name, namespace = lease_name(obj.kind, aws_name, scope), settings.operator_namespace
    try:
        have = leases.read_namespaced_lease(name, namespace)
        if _holder(have) != _identity(obj) or have.metadata is None:
            return
        leases.delete_namespaced_lease(
            name,
            namespace,
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(
                    resource_version=have.metadata.resource_version
                )
            ),
        )
    except ApiException as err:
        if err.status not in (404, 409):
            raise
