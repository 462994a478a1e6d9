"""Project: what the Applications that name it may do (a subset of Argo CD's AppProject)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from herd_core.models.base import CRD, Column, Resource, Spec

NonEmpty = Annotated[str, Field(min_length=1)]


class ProjectDestination(Spec):
    namespace: NonEmpty
    server: Literal["https://kubernetes.default.svc", "*"] | None = Field(
        None, description="Only the cluster the operator runs in."
    )


class GroupKind(Spec):
    group: str
    kind: NonEmpty


class DestinationServiceAccount(Spec):
    namespace: NonEmpty
    server: str | None = None
    defaultServiceAccount: str = Field(
        min_length=1,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?:)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
    )


class ProjectSpec(Spec):
    description: str | None = Field(None, max_length=1024)
    sourceRepos: list[NonEmpty] = Field(
        description="Repository URLs (globs, '*' for any) the Applications may use.",
        min_length=1,
    )
    sourceNamespaces: list[NonEmpty] | None = Field(
        None,
        description=(
            "Namespaces (globs) whose Applications may use this Project (Argo's "
            "sourceNamespaces). The operator's own namespace always may; others only when "
            "listed. Default, none."
        ),
    )
    destinations: list[ProjectDestination] = Field(
        description=(
            "Namespaces (globs) the Applications may deploy to; every namespaced object must "
            "land in one."
        ),
        min_length=1,
    )
    clusterResourceWhitelist: list[GroupKind] | None = Field(
        None, description="Cluster-scoped kinds the Applications may apply (globs). Default, none."
    )
    namespaceResourceBlacklist: list[GroupKind] | None = Field(
        None, description="Namespaced kinds the Applications may not apply (globs)."
    )
    destinationServiceAccounts: list[DestinationServiceAccount] = Field(
        description=(
            "Who a sync acts as, per destination namespace (glob; the first match wins): a "
            "ServiceAccount in the destination namespace, or `namespace:name`."
        ),
        min_length=1,
    )


class Project(Resource):
    """What the Applications that name it may do (a subset of Argo CD's AppProject)."""

    crd = CRD(
        plural="projects",
        short_names=("proj", "appproj"),
        scope="Cluster",
        status_subresource=False,
        columns=(
            Column("Sources", ".spec.sourceRepos"),
            Column("SourceNamespaces", ".spec.sourceNamespaces", priority=1),
            Column("Destinations", ".spec.destinations[*].namespace"),
            Column("ServiceAccounts", ".spec.destinationServiceAccounts[*].defaultServiceAccount"),
            Column("ClusterResources", ".spec.clusterResourceWhitelist[*].kind", priority=1),
            Column("Age", ".metadata.creationTimestamp", type="date"),
        ),
        comment=(
            "Cluster-scoped and written by cluster admins only: an Application names a Project, "
            "it never widens one, and may name it only from a namespace the Project lists in "
            "sourceNamespaces (or from the operator's own). The destination ServiceAccount is "
            "who the sync acts as (Impersonate-User), so that ServiceAccount's RBAC is the "
            "hard limit; the lists below refuse early, with a message."
        ),
    )

    spec: ProjectSpec
