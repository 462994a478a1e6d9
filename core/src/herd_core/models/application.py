"""Application: Argo-style sync of a git revision + path into this cluster."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from herd_core.models.base import (
    CRD,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    Column,
    Generation,
    ObjectName,
    Resource,
    Spec,
    Status,
    cel,
    k8s,
)

SyncOption = Literal[
    "CreateNamespace=true",
    "CreateNamespace=false",
    "PruneLast=true",
    "ServerSideApply=true",
    # Herd applies only what differs whatever this says (the dry run tells it what does).
    "ApplyOutOfSyncOnly=true",
    "ApplyOutOfSyncOnly=false",
    "Replace=true",
    "Replace=false",
    "PrunePropagationPolicy=foreground",
    "PrunePropagationPolicy=background",
    "PrunePropagationPolicy=orphan",
    "RespectIgnoreDifferences=true",
    "RespectIgnoreDifferences=false",
]


class HelmParameter(Spec):
    name: str = Field(min_length=1, max_length=1024)
    value: str = Field("", max_length=65536)
    forceString: bool = False


class Helm(Spec):
    releaseName: str | None = Field(None, max_length=53, pattern=DNS_SUBDOMAIN_PATTERN)
    valueFiles: list[str] | None = Field(
        None, description="Relative to path; may reach apps/ and the environment folder."
    )
    values: str | None = Field(None, description="Inline values as a YAML string (Argo's form).")
    valuesObject: dict[str, Any] | None = None
    parameters: list[HelmParameter] | None = Field(
        None,
        max_length=500,
        description="--set name=value (--set-string with forceString), after the values.",
    )


class Directory(Spec):
    """A folder of plain manifests (Argo's `directory`; jsonnet is not supported)."""

    recurse: bool = Field(False, description="Read subfolders too.")
    include: str | None = Field(
        None, max_length=1024, description="Glob of paths to read ('*.yaml', '{a.yaml,b.yaml}')."
    )
    exclude: str | None = Field(None, max_length=1024, description="Glob of paths to skip.")


class KustomizePatchTarget(Spec):
    group: str | None = Field(None, max_length=253)
    version: str | None = Field(None, max_length=63)
    kind: str | None = Field(None, max_length=63)
    name: str | None = Field(None, max_length=253)
    namespace: str | None = Field(None, max_length=63)
    labelSelector: str | None = Field(None, max_length=1024)
    annotationSelector: str | None = Field(None, max_length=1024)


class KustomizePatch(Spec):
    patch: str = Field(
        max_length=262144,
        description="An inline strategic merge or JSON 6902 patch (YAML); no `path`.",
    )
    target: KustomizePatchTarget | None = None


class KustomizeReplica(Spec):
    name: str = Field(min_length=1, max_length=253)
    count: int = Field(ge=0)


class Kustomize(Spec):
    """Argo's edits of the kustomization (`kustomize edit` on a copy), before the build."""

    namePrefix: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9.-]*$")
    nameSuffix: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9.-]*$")
    namespace: str | None = Field(None, max_length=63, pattern=DNS_LABEL_PATTERN)
    images: list[str] | None = Field(
        None,
        max_length=200,
        description="'name=newName:tag', 'name:tag' or 'name@digest', as `kustomize edit set "
        "image`.",
    )
    commonLabels: dict[str, str] | None = None
    commonAnnotations: dict[str, str] | None = None
    replicas: list[KustomizeReplica] | None = Field(None, max_length=200)
    patches: list[KustomizePatch] | None = Field(None, max_length=100)


class Credentials(Spec):
    """Secret in the Application's namespace, labelled
    platform.herd-itt.com/secret-type=repository, with `url` (a prefix of repoURL: credentials
    go nowhere else) and username/password or sshPrivateKey."""

    secretName: ObjectName


class Source(Spec):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            cel(
                "[has(self.helm), has(self.kustomize), has(self.directory)]"
                ".filter(x, x).size() <= 1",
                "source: set at most one of helm, kustomize and directory",
            )
        )
    )

    repoURL: str = Field(pattern=r"^(https://|http://|ssh://|git@|file://)")
    targetRevision: str = Field("HEAD", description="Branch, tag or commit.", max_length=255)
    path: str = Field(
        description="Folder in the repository, relative to its root; '.' for the root.",
        json_schema_extra=k8s(
            cel(
                "!self.startsWith('/') && !self.contains('..')",
                "path must be relative and stay inside the repository",
            )
        ),
    )
    helm: Helm | None = None
    kustomize: Kustomize | None = None
    directory: Directory | None = None
    credentials: Credentials | None = None


class Destination(Spec):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            # Argo wants exactly one; Herd has always allowed neither (its own cluster).
            cel(
                "!(has(self.server) && has(self.name))",
                "destination: set server or name, not both",
            )
        )
    )

    server: Literal["https://kubernetes.default.svc"] | None = Field(
        None, description="Only the cluster the operator runs in."
    )
    name: str | None = Field(
        None,
        max_length=253,
        description="Argo's cluster name: only `in-cluster`, the cluster the operator runs in.",
        json_schema_extra=k8s(
            cel(
                "self == 'in-cluster'",
                "destination.name may only be 'in-cluster': Herd syncs into the cluster it "
                "runs in, and has no other clusters",
            )
        ),
    )
    namespace: str = Field(max_length=63, pattern=DNS_LABEL_PATTERN)


class Rollback(Spec):
    """Herd's extension, not Argo's: back to the last Healthy revision when a sync leaves
    the Application Degraded for `after`; a new commit on the branch lifts it."""

    onDegraded: bool = False
    after: str = Field(
        "5m",
        pattern=DURATION_PATTERN,
        max_length=10,
        description="How long Degraded after a sync before rolling back (at least 5s).",
        json_schema_extra=k8s(
            # Short enough for a test; a shorter wait would roll back a rollout in progress.
            cel("duration(self) >= duration('5s')", "rollback.after must be at least 5s")
        ),
    )


class Automated(Spec):
    prune: bool = False
    selfHeal: bool = False
    rollback: Rollback | None = None


class Backoff(Spec):
    duration: str = Field("5s", pattern=DURATION_PATTERN)
    factor: int = Field(2, ge=1, le=10)
    maxDuration: str = Field("3m", pattern=DURATION_PATTERN)


class Retry(Spec):
    limit: int = Field(5, ge=0, le=100)
    backoff: Backoff | None = None


class SyncPolicy(Spec):
    automated: Automated | None = None
    syncOptions: list[SyncOption] | None = None
    retry: Retry | None = None


class IgnoreDifference(Spec):
    """Argo's: differences of these fields of these objects do not make the Application
    OutOfSync (with RespectIgnoreDifferences=true, a sync leaves them as they are live)."""

    group: str | None = Field(None, max_length=253, description="'' or unset: the core group.")
    kind: str = Field(max_length=63)
    name: str | None = Field(None, max_length=253)
    namespace: str | None = Field(None, max_length=63)
    jsonPointers: list[Annotated[str, Field(max_length=1024, pattern=r"^/")]] | None = Field(
        None, max_length=64, description="JSON pointers (RFC 6901), e.g. /spec/replicas."
    )
    jqPathExpressions: list[str] | None = Field(
        None,
        json_schema_extra=k8s(
            cel(
                "size(self) == 0",
                "jqPathExpressions are not supported by Herd: use jsonPointers or "
                "managedFieldsManagers",
            )
        ),
    )
    managedFieldsManagers: list[str] | None = Field(
        None, max_length=16, description="Fields these managers own in the live object."
    )


class Dependency(Spec):
    name: ObjectName
    namespace: str | None = Field(
        None, max_length=63, pattern=DNS_LABEL_PATTERN, description="Default: this one's."
    )


class ApplicationSpec(Spec):
    project: ObjectName = Field(
        description=(
            "The Project (cluster-scoped, admin-owned) that says what this Application may do."
        )
    )
    source: Source
    destination: Destination
    syncPolicy: SyncPolicy | None = None
    ignoreDifferences: list[IgnoreDifference] | None = Field(None, max_length=64)
    pollInterval: str | None = Field(
        None,
        description=(
            "How often the revision is fetched (at least 10s); default the operator's (60s)."
        ),
        pattern=DURATION_PATTERN,
        max_length=10,
        json_schema_extra=k8s(
            cel("duration(self) >= duration('10s')", "pollInterval must be at least 10s")
        ),
    )
    dependsOn: list[Dependency] | None = Field(
        None,
        max_length=32,
        description=(
            "Herd's extension, not Argo's: sync only once each of these Applications (of the "
            "same Project) is Synced and Healthy at its own current revision."
        ),
    )
    revisionHistoryLimit: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Sync history entries kept in status (Argo's; default 10, at most the operator's "
            "HERD_HISTORY_LIMIT)."
        ),
    )


class SyncStatus(Status):
    status: Literal["Synced", "OutOfSync", "Unknown"] | None = None
    revision: str | None = None


class HealthStatus(Status):
    status: (
        Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"] | None
    ) = None
    message: str | None = None


class ApplicationStatus(Status):
    # Argo's status has more than we name here; the operator keeps what it writes.
    model_config = ConfigDict(extra="allow")

    observedGeneration: Generation | None = None
    reconciledAt: str | None = None
    sync: SyncStatus | None = None
    health: HealthStatus | None = None
    resources: list[dict[str, Any]] | None = None
    operationState: dict[str, Any] | None = None
    # After a transient comparison error (a clone, a fetch, the API server busy): the next
    # try's time and count (Herd's; Argo has no such field).
    comparisonRetry: dict[str, Any] | None = None
    # Argo's entries (id, revision, deployedAt, source) plus Herd's result, healthAfter and
    # healthSince: the health that sync left, and since when.
    history: list[dict[str, Any]] | None = None
    # Herd's auto-rollback: the last Healthy revision synced instead of the branch head
    # (pinnedFrom) while the head stays at the revision that went Degraded.
    pinnedRevision: str | None = None
    pinnedFrom: str | None = None
    conditions: list[dict[str, Any]] | None = None


class Application(Resource):
    """Argo-style sync of a git revision + path into this cluster (a compatible subset of Argo
    CD's Application)."""

    crd = CRD(
        plural="applications",
        short_names=("app", "apps"),
        columns=(
            Column("Project", ".spec.project"),
            Column("Sync", ".status.sync.status"),
            Column("Health", ".status.health.status"),
            Column("Revision", ".status.sync.revision"),
            Column("Branch", ".spec.source.targetRevision", priority=1),
            Column("Path", ".spec.source.path", priority=1),
            Column("Age", ".metadata.creationTimestamp", type="date"),
        ),
        comment=(
            "What it may do is its Project's to say (projects.yaml), and every request of its "
            "sync is made as the Project's destination ServiceAccount."
        ),
    )

    operation: dict[str, Any] | None = Field(
        None,
        description="Argo's one-off operation field; `herd app sync` sets it to request a sync.",
    )
    spec: ApplicationSpec
    status: ApplicationStatus | None = None
