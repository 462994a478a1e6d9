"""Compare an Application's git revision with the cluster, and sync it.

compare(): fetch the revision, render it, check the allow list, server-side dry-run every
object (the real API server validates and defaults it) and diff the result with the live
object. Any failure here is a ComparisonError: nothing is applied.

sync(): server-side apply in waves (Argo's sync-wave annotation, Argo's kind order), each
object marked with our tracking annotation; later waves wait until earlier ones are healthy;
prune deletes only objects that carry this Application's tracking annotation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd_operator.constants import TRACKING_ANNOTATION
from herd_operator.gitops import health
from herd_operator.gitops.git import Credentials, RepoCache
from herd_operator.gitops.kubeapply import Applier, ApplyError
from herd_operator.gitops.plan import (
    Key,
    changed_paths,
    check_allowed,
    comparable,
    differs,
    order,
    tracked_by,
    tracking_id,
)
from herd_operator.gitops.render import Limits, Source, render

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"


class ComparisonError(Exception):
    """The revision cannot be fetched, rendered or validated: nothing is applied."""


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
    ) -> None:
        self.api = api
        self.limits = limits
        self.applier = Applier(api)
        self.core = client.CoreV1Api(api)
        self.cache = cache
        self.helm = helm
        self.wave_health_gate = wave_health_gate

    # -- compare ----------------------------------------------------------------------------
    def fetch(self, app: Application) -> tuple[str, Path]:
        from herd_operator.gitops.git import GitError

        source = app.spec["source"]
        try:
            creds = self._credentials(app)
            sha = self.cache.resolve(
                source["repoURL"], source.get("targetRevision") or "HEAD", creds
            )
            return sha, self.cache.checkout(source["repoURL"], sha)
        except GitError as err:
            raise ComparisonError(str(err)) from err

    def desired(self, app: Application, tree: Path) -> list[dict[str, Any]]:
        from herd_operator.gitops.plan import NotAllowed
        from herd_operator.gitops.render import RenderError

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
                namespaced = self.applier.namespaced(obj)
            except ApplyError as err:
                raise ComparisonError(str(err)) from err
            if namespaced:
                meta["namespace"] = meta.get("namespace") or app.destination
            else:
                meta.pop("namespace", None)
            key = Key.of(obj)
            try:
                check_allowed(key, namespaced, app.spec)
            except NotAllowed as err:
                raise ComparisonError(str(err)) from err
            meta.setdefault("annotations", {})[TRACKING_ANNOTATION] = tracking_id(
                app.namespace, app.name, key
            )
            out.append(obj)
        return out

    def compare(self, app: Application) -> Comparison:
        sha, tree = self.fetch(app)
        objects = self.desired(app, tree)
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
            live = self.applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            dry = None
            if key.namespace in missing_ns:
                if key.namespace not in planned:
                    errors.append(f"{key}: namespace {key.namespace} does not exist")
                # Otherwise validated at sync time, once its namespace exists.
            else:
                try:
                    dry = self.applier.apply(obj, dry_run=True)
                except ApplyError as err:
                    errors.append(str(err))
            items.append(Item(key, obj, dry, live))
        if errors:
            raise ComparisonError(
                "; ".join(errors[:5])
                + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
            )
        wanted = {i.key for i in items}
        prune = []
        for entry in app.inventory:
            key = Key(
                entry.get("group", ""),
                entry.get("version", ""),
                entry["kind"],
                entry.get("namespace", ""),
                entry["name"],
            )
            if key in wanted:
                continue
            try:
                live = self.applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            except ApplyError:
                continue  # its kind is gone from the cluster, and so is it
            if live is not None and tracked_by(live, app.namespace, app.name):
                prune.append((key, live))
        return Comparison(sha, items, prune, create_ns)

    # -- sync -------------------------------------------------------------------------------
    def sync(self, app: Application, comparison: Comparison, prune: bool) -> tuple[str, str]:
        """Apply; ("Succeeded"|"Running", message). Raises SyncError when the API refuses."""
        if comparison.create_namespace and not self._namespace_exists(app.destination):
            self.core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=app.destination))
            )
        waves = order(i.desired for i in comparison.items)
        items = {id(i.desired): i for i in comparison.items}
        prune_last = "PruneLast=true" in app.sync_options
        if prune and not prune_last:
            self._prune(comparison)
        for index, objects in enumerate(waves):
            for obj in objects:
                item = items[id(obj)]
                if item.in_sync:
                    continue  # the dry run showed nothing to change (Argo's ApplyOutOfSyncOnly)
                try:
                    applied = self.applier.apply(obj)
                except ApplyError as err:
                    raise SyncError(str(err)) from err
                # What the server now holds is both the live object and git's: in sync.
                item.live = item.dry_run = applied
            if self.wave_health_gate and index < len(waves) - 1:
                waiting = [
                    f"{Key.of(o)}: {msg or status}"
                    for o in objects
                    for status, msg in [self.health(Key.of(o))]
                    if status not in (health.HEALTHY, health.SUSPENDED)
                ]
                if waiting:
                    return "Running", (
                        f"waiting for wave {index + 1} of {len(waves)} to be healthy: {waiting[0]}"
                    )
        if prune and prune_last:
            self._prune(comparison)
        return "Succeeded", f"synced {len(comparison.items)} objects"

    def _prune(self, comparison: Comparison) -> None:
        for key, _live in comparison.prune:
            try:
                self.applier.delete(key.api_version, key.kind, key.name, key.namespace or None)
            except (ApplyError, ApiException) as err:
                raise SyncError(f"prune {key}: {err}") from err
        comparison.prune = []

    def health(self, key: Key) -> tuple[str, str]:
        try:
            live = self.applier.get(key.api_version, key.kind, key.name, key.namespace or None)
        except ApplyError:
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
        return Credentials.from_secret({k: str(v) for k, v in (secret.data or {}).items()})
