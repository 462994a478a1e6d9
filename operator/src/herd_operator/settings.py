"""The operator's settings: the shared ones (herd_core.settings) and its own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator

from herd_core.settings import Settings as CoreSettings


class Settings(CoreSettings):
    # Operator
    aws_name_prefix: str = Field("", description="Prefix of AWS names we create, e.g. `dev-`")
    adoption_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces (fnmatch patterns) whose objects may adopt AWS objects that "
        "Herd did not create for them; empty: none. Never one another resource holds",
    )
    drift_interval: float = Field(
        300.0, gt=0, description="Seconds from the end of one drift sweep to the next"
    )
    drift_max_rate: float = Field(
        100.0, gt=0, description="Objects a drift sweep checks per second, at most"
    )
    metrics_port: int = Field(9300, ge=0, description="Prometheus metrics port; 0 turns it off")
    health_port: int = Field(8081, ge=0, description="Liveness endpoint port; 0 turns it off")
    listen_host: str = Field(
        "127.0.0.1",
        description="Address the webhook, metrics and health servers bind; 0.0.0.0 in a pod",
    )
    retry_backoff_base: float = Field(2.0, gt=0, description="First retry delay, seconds")
    waiting_delay: float = Field(2.0, gt=0, description="Recheck of a pending dependency, s")
    child_wait: float = Field(
        30.0,
        ge=0,
        description="How long a Tenant's handler waits, keeping its place, for its new "
        "CognitoClient's first state, s; past it the handler ends and the child's change "
        "wakes the Tenant through an annotation. 0: never waits",
    )
    retry_backoff_max: float = Field(300.0, gt=0, description="Longest retry delay, seconds")
    kube_connections: int = Field(
        32,
        ge=1,
        description="Kopf's requests to the API server at once (connections beside its "
        "watch streams); more wait for one",
    )
    objects_in_flight: int | None = Field(
        200,
        ge=1,
        description="Objects of one kind handled at once (Kopf's worker limit); the others "
        "wait their turn in arrival order. An object waiting out a retry keeps its place: "
        "this many retrying at once hold up the rest. Unset: no limit",
    )
    watch_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces the operator watches; empty: all"
    )
    peering: str | None = Field(
        None, description="Kopf peering name for leader election; unset: standalone"
    )
    peering_priority: int | None = Field(
        None,
        description="This replica's Kopf priority (the highest live one works, the others "
        "wait); unset: the earlier a replica started the higher (replicas never tie: Kopf "
        "pauses all replicas of equal priority)",
    )
    peering_lifetime: int = Field(
        60,
        ge=10,
        description="Seconds a replica's peering record counts as alive: a replica killed "
        "without a goodbye is replaced after at most this long",
    )

    # Sharding: Applications shared out between replicas (docs/sharding.md)
    sharding_enabled: bool = Field(
        False,
        description="Every replica reconciles Applications, each app by one live replica "
        "(Leases in operator_namespace); Tenants, SESTemplates and CognitoClients keep one "
        "working replica (peering). Off: one replica does all",
    )
    sharding_lease_duration: float = Field(
        15.0,
        ge=3,
        description="Seconds a replica's Lease lasts unrenewed: a killed replica's apps are "
        "taken over after at most this long, and a joining one starts on its share this long "
        "after it joined",
    )
    sharding_renew_interval: float = Field(
        5.0,
        gt=0,
        description="Seconds between renewals of a replica's Lease (and listings of the "
        "others'); at most a third of the duration. A replica that has not renewed for "
        "duration - interval starts no work (it fences itself before its Lease expires)",
    )
    sharding_identity: str | None = Field(
        None, description="This replica's member name; unset: the pod's name and a suffix"
    )

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Settings:
        if self.sharding_renew_interval * 3 > self.sharding_lease_duration:
            raise ValueError("sharding_renew_interval must be at most a third of the duration")
        return self

    # Tenants
    cognito_shared_client_id: str | None = Field(
        None,
        description="The platform pool's app client every Tenant without callbackURLs signs "
        "in with (`herd-tenants`, made by `herd aws bootstrap`); unset: every Tenant gets a "
        "CognitoClient of its own, as before (docs/tenant-model.md)",
    )
    cognito_shared_client_name: str = Field(
        "herd-tenants", description="That client's name, as the Tenants' AppClient step says"
    )
    migrate_tenant_clients: bool = Field(
        True,
        description="A Tenant without callbackURLs that has a CognitoClient of its own moves "
        "to the shared client on its next reconcile (its Secret first, then the child goes); "
        "false: such Tenants keep theirs",
    )
    welcome_template: str = Field("welcome", description="Default SESTemplate of the welcome")
    login_url_template: str = Field(
        "https://platform-dev.herd-itt.com/manager/?realm={slug}",
        description="A tenant's login URL; {slug} is replaced",
    )

    # OpenRemote provisioning (off unless enabled)
    openremote_enabled: bool = False
    openremote_url: str = Field("http://openremote-manager:8080", description="Manager base URL")
    openremote_keycloak_url: str | None = Field(
        None, description="Keycloak base URL (serves /auth); default: the manager URL"
    )
    openremote_client_id: str = Field("herd-provisioner", description="master-realm client")
    openremote_client_secret: str | None = Field(None, repr=False)
    openremote_admin_roles: list[str] = Field(default_factory=lambda: ["read", "write"])

    # Applications (git -> cluster)
    app_poll_interval: float = Field(60.0, gt=0, description="Default git poll interval, s")
    app_tick: float = Field(5.0, gt=0, description="How often due Applications are checked")
    git_url_rewrites: dict[str, str] = Field(
        default_factory=dict, description="git insteadOf: {new URL: URL in the Application}"
    )
    git_max_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes one repository's mirror, or one checkout, may take on disk "
        "(the chart's cache volume is 2 Gi); past it git is stopped and the Application "
        "gets a ComparisonError",
    )
    wave_health_gate: bool = Field(
        True, description="Later sync waves wait for earlier ones to be healthy"
    )
    history_limit: int = Field(10, ge=1, description="Sync history entries kept in status")
    app_max_rendered_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest rendered source of one Application, bytes"
    )
    app_max_objects: int = Field(2000, gt=0, description="Most objects one Application renders")
    app_live_cache: bool = Field(
        True,
        description="Read Applications' live objects from watches (one informer per "
        "ServiceAccount, kind and namespace); off: one GET per object per compare",
    )
    app_revalidate_interval: float = Field(
        600.0,
        gt=0,
        description="Seconds after which an unchanged object is dry-run again (schema, "
        "defaulting, admission and RBAC changes); each object within 1.25x of it",
    )
    app_sync_concurrency: int = Field(
        8, ge=1, le=64, description="Dry runs and applies of one Application in flight at once"
    )
    app_event_debounce: float = Field(
        0.2,
        ge=0,
        description="Seconds a watch event waits before it wakes its Application, so that "
        "a burst of events wakes it once",
    )
    app_wake_workers: int = Field(
        4, ge=1, le=64, description="Threads reconciling the Applications a push wakes"
    )
    operator_namespace: str = Field("herd-system", description="The operator's own namespace")
    application_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces (globs) whose Applications are reconciled; empty: the "
        "operator's own (Argo's application.namespaces)",
    )
    ssh_known_hosts: Path = Field(
        Path("/etc/herd/ssh/ssh_known_hosts"),
        description="SSH host keys for git (the chart mounts its ConfigMap here); missing: "
        "every SSH host is refused",
    )
    local_sources: bool = Field(
        False,
        description="Local mode: Applications may use file://, local paths and http:// "
        "repositories (tests and `make up` only; they read the operator's own disk)",
    )
    webhook_port: int = Field(0, ge=0, description="GitHub push webhook port; 0: off")
    webhook_secret: str | None = Field(None, repr=False, description="GitHub webhook secret")
    webhook_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest webhook body read (a push event is kilobytes); more is 413",
    )

    helm: Path | None = Field(
        None, description="helm v4 binary that renders charts; default: on PATH"
    )
    kubectl: Path | None = Field(
        None,
        description="kubectl whose embedded kustomize builds kustomizations; default: on PATH",
    )
    state_dir: Path = Field(
        Path(".herd"), description="The operator's working folder (git checkouts)"
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
