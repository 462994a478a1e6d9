"""Compare an Application's git revision with the cluster, and sync it.

compare(): check the Application against its Project (source, destination, ServiceAccount),
fetch the revision, render it, check every object against the Project, server-side dry-run
every object (the real API server validates and defaults it) and diff the result with the live
object. Any failure here is a ComparisonError (InvalidSpecError for the Project checks):
nothing is applied.

Every read, dry run, apply and delete of an Application's objects is made as its Project's
destination ServiceAccount (Impersonate-User), so the API server's RBAC bounds what git can do
whatever the operator itself may.

sync(): server-side apply in waves (Argo's sync-wave annotation, Argo's kind order), each
object marked with our tracking annotation; later waves wait until earlier ones are healthy;
prune deletes only objects that carry this Application's tracking annotation.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd_core.constants import (
    GROUP,
    PROJECTS,
    REPO_SECRET_LABEL,
    REPO_SECRET_TYPE,
    TRACKING_ANNOTATION,
    VERSION,
)
from herd_operator.gitops import health
from herd_operator.gitops.git import Credentials, GitError, RepoCache
from herd_operator.gitops.kubeapply import Applier, ApplyError, api_message
from herd_operator.gitops.plan import (
    Key,
    NotAllowed,
    changed_paths,
    comparable,
    differs,
    order,
    tracked_by,
    tracking_id,
)
from herd_operator.gitops.project import (
    InvalidProject,
    Project,
    check_repo_url,
    credentials_match,
    impersonated_user,
)
from herd_operator.gitops.render import Limits, RenderError, Source, render

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"


class ComparisonError(Exception):
    """The revision cannot be fetched, rendered or validated: nothing is applied."""

    condition = "ComparisonError"


class InvalidSpecError(ComparisonError):
    """The Application's Project is missing or does not permit its source or destination."""

    condition = "InvalidSpecError"


class SyncError(Exception):
    """Applying failed part-way; the message is the API server's."""


@dataclass
class Item:
    key: Key
    desired: dict[str, Any]
    dry_run: dict[str, Any] | None
    live: dict[str, Any] | None

    @property
    def in_sync(self) -> bool:
        return self.dry_run is not None and not differs(self.dry_run, self.live)


@dataclass
class Comparison:
    revision: str
    items: list[Item]
    prune: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    create_namespace: bool = False
    user: str = ""  # the ServiceAccount every request of the sync impersonates

    @property
    def in_sync(self) -> bool:
        return all(i.in_sync for i in self.items) and not self.prune

    def diff(self) -> list[tuple[str, list[str]]]:
        """What a sync would change: (object, changed paths) — for `herd app diff`."""
        out: list[tuple[str, list[str]]] = []
        for item in self.items:
            if item.live is None:
                out.append((str(item.key), ["(new)"]))
            elif item.dry_run is not None and not item.in_sync:
                out.append(
                    (str(item.key), changed_paths(comparable(item.live), comparable(item.dry_run)))
                )
        out += [(str(k), ["(pruned)"]) for k, _ in self.prune]
        return out


@dataclass
class Application:
    """The parts of an Application object the engine needs."""

    name: str
    namespace: str
    spec: dict[str, Any]
    inventory: list[dict[str, Any]]  # status.resources of the last comparison

    @property
    def destination(self) -> str:
        return str(self.spec["destination"]["namespace"])

    @property
    def project(self) -> str:
        return str(self.spec.get("project") or "")

    @property
    def sync_options(self) -> set[str]:
        return set((self.spec.get("syncPolicy") or {}).get("syncOptions") or [])


class Engine:
    def __init__(
        self,
        api: client.ApiClient,
        cache: RepoCache,
        helm: Path,
        wave_health_gate: bool = True,
        limits: Limits = Limits(),  # noqa: B008 - frozen
        local_sources: bool = False,
    ) -> None:
        self.api = api
        self.limits = limits
        self.local_sources = local_sources
        self.core = client.CoreV1Api(api)  # the operator's own identity: Projects, Secrets
        self.custom = client.CustomObjectsApi(api)
        self.cache = cache
        self.helm = helm
        self.wave_health_gate = wave_health_gate
        self._appliers: dict[str, Applier] = {}
        self._guard = threading.Lock()

    def applier(self, user: str) -> Applier:
        """An Applier whose every request impersonates `user` (one per user, reused: each
        holds its discovery cache)."""
        with self._guard:
            if user not in self._appliers:
                api = client.ApiClient(configuration=self.api.configuration)
                api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
                self._appliers[user] = Applier(api)
            return self._appliers[user]

    # -- the Project --------------------------------------------------------------------------
    def project(self, app: Application) -> Project:
        if not app.project:
            raise InvalidSpecError("spec.project is not set")
        try:
            obj: dict[str, Any] = self.custom.get_cluster_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, PROJECTS, app.project
            )
        except ApiException as err:
            if err.status == 404:
                raise InvalidSpecError(f"project {app.project} does not exist") from err
            raise
        return Project(app.project, obj.get("spec") or {})

    def identity(self, app: Application) -> tuple[Project, str]:
        """The Project and the impersonated user, once the Project permits the Application's
        source and destination."""
        project = self.project(app)
        try:
            check_repo_url(app.spec["source"]["repoURL"], self.local_sources)
        except InvalidProject as err:
            raise ComparisonError(str(err)) from err  # the operator's policy, not the Project's
        try:
            project.check_source(app.spec["source"]["repoURL"])
            project.check_destination(app.destination)
            account = project.service_account(app.destination)
        except InvalidProject as err:
            raise InvalidSpecError(str(err)) from err
        return project, impersonated_user(account)

    # -- compare ----------------------------------------------------------------------------
    def fetch(self, app: Application) -> tuple[str, Path]:
        source = app.spec["source"]
        try:
            creds = self._credentials(app)
            sha = self.cache.resolve(
                source["repoURL"], source.get("targetRevision") or "HEAD", creds
            )
            return sha, self.cache.checkout(source["repoURL"], sha, creds)
        except GitError as err:
            raise ComparisonError(str(err)) from err

    def desired(
        self, app: Application, tree: Path, project: Project, applier: Applier
    ) -> list[dict[str, Any]]:
        try:
            objects = render(
                tree,
                Source.from_spec(app.spec, app.name),
                app.destination,
                self.helm,
                limits=self.limits,
            )
        except RenderError as err:
            raise ComparisonError(str(err)) from err
        out = []
        for raw in objects:
            obj = copy.deepcopy(raw)
            meta = obj.setdefault("metadata", {})
            try:
                namespaced = applier.namespaced(obj)
            except ApplyError as err:
                raise ComparisonError(str(err)) from err
            if namespaced:
                meta["namespace"] = meta.get("namespace") or app.destination
            else:
                meta.pop("namespace", None)
            key = Key.of(obj)
            try:
                project.check_object(key, namespaced)
            except NotAllowed as err:
                raise ComparisonError(str(err)) from err
            meta.setdefault("annotations", {})[TRACKING_ANNOTATION] = tracking_id(
                app.namespace, app.name, key
            )
            out.append(obj)
        return out

    def compare(self, app: Application) -> Comparison:
        project, user = self.identity(app)
        applier = self.applier(user)
        sha, tree = self.fetch(app)
        objects = self.desired(app, tree, project, applier)
        seen: set[Key] = set()
        for key in map(Key.of, objects):
            if key in seen:
                raise ComparisonError(f"{key} appears more than once")
            seen.add(key)
        create_ns = "CreateNamespace=true" in app.sync_options
        missing_ns = {
            ns
            for ns in {o["metadata"].get("namespace") for o in objects}
            if ns and not self._namespace_exists(ns)
        }
        # Namespaces this sync itself creates: CreateNamespace, or a Namespace in the source.
        planned = {
            o["metadata"]["name"]
            for o in objects
            if o["kind"] == "Namespace" and o["apiVersion"] == "v1"
        } | ({app.destination} if create_ns else set())
        items, errors = [], []
        for obj in objects:
            key = Key.of(obj)
            try:
                live = applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            except ApiException as err:
                errors.append(f"{key}: {api_message(err)}")
                continue
            dry = None
            if key.namespace in missing_ns:
                if key.namespace not in planned:
                    errors.append(f"{key}: namespace {key.namespace} does not exist")
                # Otherwise validated at sync time, once its namespace exists.
            else:
                try:
                    dry = applier.apply(obj, dry_run=True)
                except ApplyError as err:
                    errors.append(str(err))
            items.append(Item(key, obj, dry, live))
        if errors:
            raise ComparisonError(
                "; ".join(errors[:5])
                + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
            )
        # Identity without the version: an apiVersion bump of an object is the same object.
        wanted = {i.key for i in items}
        prune = self.tracked(app, applier, skip=wanted)
        return Comparison(sha, items, prune, create_ns, user)

    def tracked(
        self, app: Application, applier: Applier, skip: set[Key] | None = None
    ) -> list[tuple[Key, dict[str, Any]]]:
        """The live objects of the inventory that still carry this Application's tracking
        annotation (so never an object someone else owns now)."""
        out = []
        for entry in app.inventory:
            if not entry.get("kind") or not entry.get("name"):
                continue
            key = Key(
                entry.get("group", ""),
                entry.get("version", ""),
                entry["kind"],
                entry.get("namespace", ""),
                entry["name"],
            )
            if skip and key in skip:
                continue
            try:
                live = applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            except ApplyError:
                continue  # its kind is gone from the cluster, and so is it
            except ApiException as err:
                raise ComparisonError(f"{key}: {api_message(err)}") from err
            if live is not None and tracked_by(live, app.namespace, app.name):
                out.append((key, live))
        return out

    def cascade(self, app: Application) -> list[str]:
        """Delete what the Application tracks (as its ServiceAccount); what still exists."""
        _project, user = self.identity(app)
        applier = self.applier(user)
        remaining = []
        for key, live in self.tracked(app, applier):
            if not (live.get("metadata") or {}).get("deletionTimestamp"):
                try:
                    applier.delete(key.api_version, key.kind, key.name, key.namespace or None)
                except (ApplyError, ApiException) as err:
                    raise SyncError(f"delete {key}: {err}") from err
            remaining.append(str(key))
        return remaining

    # -- sync -------------------------------------------------------------------------------
    def sync(self, app: Application, comparison: Comparison, prune: bool) -> tuple[str, str]:
        """Apply; ("Succeeded"|"Running", message). Raises SyncError when the API refuses."""
        applier = self.applier(comparison.user)
        if comparison.create_namespace and not self._namespace_exists(app.destination):
            try:
                client.CoreV1Api(applier.api).create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=app.destination))
                )
            except ApiException as err:
                raise SyncError(f"create namespace {app.destination}: {api_message(err)}") from err
        waves = order(i.desired for i in comparison.items)
        items = {id(i.desired): i for i in comparison.items}
        prune_last = "PruneLast=true" in app.sync_options
        if prune and not prune_last:
            self._prune(comparison, applier)
        for index, objects in enumerate(waves):
            for obj in objects:
                item = items[id(obj)]
                if item.in_sync:
                    continue  # the dry run showed nothing to change (Argo's ApplyOutOfSyncOnly)
                try:
                    applied = applier.apply(obj)
                except ApplyError as err:
                    raise SyncError(str(err)) from err
                # What the server now holds is both the live object and git's: in sync.
                item.live = item.dry_run = applied
            if self.wave_health_gate and index < len(waves) - 1:
                waiting = [
                    f"{Key.of(o)}: {msg or status}"
                    for o in objects
                    for status, msg in [self.health(Key.of(o), comparison.user)]
                    if status not in (health.HEALTHY, health.SUSPENDED)
                ]
                if waiting:
                    return "Running", (
                        f"waiting for wave {index + 1} of {len(waves)} to be healthy: {waiting[0]}"
                    )
        if prune and prune_last:
            self._prune(comparison, applier)
        return "Succeeded", f"synced {len(comparison.items)} objects"

    def _prune(self, comparison: Comparison, applier: Applier) -> None:
        for key, _live in comparison.prune:
            try:
                applier.delete(key.api_version, key.kind, key.name, key.namespace or None)
            except ApplyError as err:
                raise SyncError(f"prune {key}: {err}") from err
            except ApiException as err:
                raise SyncError(f"prune {key}: {api_message(err)}") from err
        comparison.prune = []

    def health(self, key: Key, user: str) -> tuple[str, str]:
        try:
            live = self.applier(user).get(
                key.api_version, key.kind, key.name, key.namespace or None
            )
        except (ApplyError, ApiException):
            live = None
        return health.of(live)

    # -- helpers ----------------------------------------------------------------------------
    def _namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def _credentials(self, app: Application) -> Credentials | None:
        ref = (app.spec["source"].get("credentials") or {}).get("secretName")
        if not ref:
            return None
        try:
            secret = self.core.read_namespaced_secret(ref, app.namespace)
        except ApiException as err:
            raise ComparisonError(f"credentials Secret {ref}: {err.reason}") from err
        # Only Secrets made for this (Argo's secret-type label), and only to the host they name.
        labels = (secret.metadata.labels if secret.metadata else None) or {}
        if labels.get(REPO_SECRET_LABEL) != REPO_SECRET_TYPE:
            raise ComparisonError(
                f"credentials Secret {ref} lacks the label {REPO_SECRET_LABEL}={REPO_SECRET_TYPE}"
            )
        creds = Credentials.from_secret({k: str(v) for k, v in (secret.data or {}).items()})
        if not credentials_match(creds.url, app.spec["source"]["repoURL"]):
            raise ComparisonError(
                f"credentials Secret {ref} is for {creds.url or '(no url)'}, not for "
                f"{app.spec['source']['repoURL']}"
            )
        return creds
