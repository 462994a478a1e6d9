"""Compare an Application's git revision with the cluster, and sync it.

compare(): check the Application against its Project (source, destination, ServiceAccount),
fetch the revision, render it, check every object against the Project, server-side dry-run
every object (the real API server validates and defaults it) and diff the result with the live
object. Any failure here is a ComparisonError (InvalidSpecError for the Project checks):
nothing is applied. In the operator, live objects come from the watch-fed cache (cache.py)
and an object is dry-run again only when its desired form or its live resourceVersion changed
since its last dry run (incremental.py); the CLI reads and dry-runs every object.

Every read, dry run, apply and delete of an Application's objects is made as its Project's
destination ServiceAccount (Impersonate-User), so the API server's RBAC bounds what git can do
whatever the operator itself may; so are the cache's lists and watches.

sync(): server-side apply in waves (Argo's sync-wave annotation, Argo's kind order; the
objects of one kind `concurrency` at a time), each object marked with our tracking
annotation and label (the live cache watches only labelled objects); later waves wait until
earlier ones are healthy; prune deletes only objects that carry this Application's tracking
annotation. Custom resources whose CRD comes in the same sync are created once the API
serves their kind. Hooks (hooks.py) are kept apart from the objects at compare and run in
their phases by sync(); ignoreDifferences' fields are left out of the compare (plan.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable
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
    TRACKING_LABEL,
    VERSION,
)
from herd_operator.gitops import health, hooks
from herd_operator.gitops.cache import Informer, InformerKey, LiveCache, wait_synced
from herd_operator.gitops.git import Credentials, GitError, RepoCache, TooLarge
from herd_operator.gitops.hooks import Hook, HookError
from herd_operator.gitops.incremental import Memo, digest
from herd_operator.gitops.kubeapply import (
    Applier,
    ApplyError,
    How,
    api_message,
    resource_path,
)
from herd_operator.gitops.plan import (
    KIND_ORDER,
    Key,
    NotAllowed,
    changed_paths,
    comparable,
    differs,
    ignored_pointers,
    matching,
    order,
    respecting,
    tracked_by,
    tracking_id,
    without,
)
from herd_operator.gitops.plan import (
    wave as wave_of,
)
from herd_operator.gitops.project import (
    InvalidProject,
    Project,
    check_repo_url,
    credentials_match,
    impersonated_user,
)
from herd_operator.gitops.render import (
    Limits,
    RenderError,
    RenderFailures,
    Source,
    checkout_reads,
    render,
)

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"
# On a hook this sync created: whose hook it is (not the tracking annotation: never pruned).
HOOK_OF_ANNOTATION = f"{GROUP}/hook-of"
NAMESPACE_SEEN_TTL = 30.0  # seconds a namespace seen to exist is believed without a read


class ComparisonError(Exception):
    """The revision cannot be fetched, rendered or validated: nothing is applied. A
    `transient` one (a clone or fetch, the API server's 5xx or 429) may pass by itself: it is
    retried with backoff, not left to the poll interval."""

    condition = "ComparisonError"

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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
    # In sync by the memo of an earlier dry run (same desired and live object): no dry run.
    known_in_sync: bool = False
    digest: bytes = b""  # of the desired object (incremental compare)
    ignore: tuple[str, ...] = ()  # JSON pointers ignoreDifferences leaves out of the compare

    @property
    def in_sync(self) -> bool:
        if self.known_in_sync:
            return True
        return self.dry_run is not None and not differs(
            without(self.dry_run, self.ignore) or {}, without(self.live, self.ignore)
        )


@dataclass
class Comparison:
    revision: str
    items: list[Item]
    prune: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    create_namespace: bool = False
    user: str = ""  # the ServiceAccount every request of the sync impersonates
    hooks: list[Hook] = field(default_factory=list)
    # Each hook run of the last sync (Argo's syncResult.resources entries, hookPhase...).
    hook_results: list[dict[str, Any]] = field(default_factory=list)

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
                live, dry_run = (without(o, item.ignore) or {} for o in (item.live, item.dry_run))
                out.append((str(item.key), changed_paths(comparable(live), comparable(dry_run))))
        out += [(str(k), ["(pruned)"]) for k, _ in self.prune]
        return out


@dataclass
class Application:
    """The parts of an Application object the engine needs."""

    name: str
    namespace: str
    spec: dict[str, Any]
    inventory: list[dict[str, Any]]  # status.resources of the last comparison
    # The last sync's hook runs (operationState.syncResult.resources): what a cascade delete
    # must also take, hooks being in no inventory.
    hook_runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def destination(self) -> str:
        return str(self.spec["destination"]["namespace"])

    @property
    def project(self) -> str:
        return str(self.spec.get("project") or "")

    @property
    def sync_options(self) -> set[str]:
        return set((self.spec.get("syncPolicy") or {}).get("syncOptions") or [])


SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"
PROPAGATION = {"foreground": "Foreground", "background": "Background", "orphan": "Orphan"}


def object_options(obj: dict[str, Any]) -> set[str]:
    """An object's own sync options (Argo's annotation, comma-separated)."""
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return {w.strip() for w in str(notes.get(SYNC_OPTIONS_ANNOTATION, "")).split(",") if w.strip()}


def how(app_options: set[str], item: Item) -> How:
    """How `item` is written: its own options over its Application's."""
    own = object_options(item.desired)

    def flag(name: str) -> bool | None:
        for options in (own, app_options):
            if f"{name}=true" in options:
                return True
            if f"{name}=false" in options:
                return False
        return None

    replace = bool(flag("Replace"))
    version = (item.live or {}).get("metadata", {}).get("resourceVersion") if replace else None
    return How(replace=replace, version=version)


def propagation(app_options: set[str]) -> str:
    """Argo's PrunePropagationPolicy (foreground by default, as Argo)."""
    for option in app_options:
        if option.startswith("PrunePropagationPolicy="):
            return PROPAGATION.get(option.partition("=")[2], "Foreground")
    return "Foreground"


@dataclass
class Operation:
    """A sync under way (kept between the calls of one sync that waits: for a wave to be
    healthy, for a hook to finish). Kept in memory: an operator that restarts in the middle
    of a sync begins it again, and its hooks run again."""

    revision: str
    runs: dict[tuple[str, int], str] = field(default_factory=dict)  # hook -> the name it got
    results: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


def _remove_dead_scratch(mine: Path) -> None:
    """Remove what processes killed mid-render left: this process's folder (a restarted
    container may have its pid), and those of processes no longer alive."""
    shutil.rmtree(mine, ignore_errors=True)
    if not mine.parent.is_dir():
        return
    for folder in mine.parent.iterdir():
        if not folder.name.isdigit():
            continue
        try:
            os.kill(int(folder.name), 0)
        except (ProcessLookupError, OverflowError):  # no such process, or no pid at all
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


class Engine:
    def __init__(
        self,
        api: client.ApiClient,
        cache: RepoCache,
        helm: Path,
        wave_health_gate: bool = True,
        limits: Limits = Limits(),  # noqa: B008 - frozen
        local_sources: bool = False,
        live: LiveCache | None = None,
        memo: Memo | None = None,
        concurrency: int = 1,
        control_namespace: str | None = None,
    ) -> None:
        self.api = api
        # Without a live cache (the CLI), every compare reads each object with a GET and
        # dry-runs each; with one (the operator), reads come from watches and dry runs only
        # for what changed since the last.
        self.live = live
        self.memo = memo
        self.concurrency = max(1, concurrency)
        self.limits = limits
        self.local_sources = local_sources
        # The operator's own namespace: its Applications may name any Project (Argo's
        # control-plane namespace); None (a test's engine): none may without sourceNamespaces.
        self.control_namespace = control_namespace
        self.core = client.CoreV1Api(api)  # the operator's own identity: Projects, Secrets
        self.custom = client.CustomObjectsApi(api)
        self.cache = cache
        self.helm = helm
        self.wave_health_gate = wave_health_gate
        self._appliers: dict[str, Applier] = {}
        self._renders: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._operations: dict[str, Operation] = {}  # syncs under way, by Application
        self.render_failures = RenderFailures()  # a failed revision is not rendered every poll
        # Renders' scratch folders, beside the checkouts (the pod's cache volume, not its
        # small /tmp), one per process: each render removes its own.
        self.scratch = cache.root / "render" / str(os.getpid())
        _remove_dead_scratch(self.scratch)
        self._guard = threading.Lock()
        # Namespaces seen to exist, and when: each compare asks of its objects' namespaces,
        # and a thousand apps of one namespace need not ask the API server a thousand times.
        self._namespaces: dict[str, float] = {}

    def applier(self, user: str) -> Applier:
        """An Applier whose every request impersonates `user` (one per user, reused: each
        holds its discovery cache)."""
        with self._guard:
            if user not in self._appliers:
                cfg = copy.copy(self.api.configuration)
                # Room for the sync's concurrent requests, as each holds a connection.
                cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, self.concurrency + 4)
                api = client.ApiClient(configuration=cfg)
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
        namespace, source and destination."""
        project = self.project(app)
        try:
            project.check_application_namespace(app.namespace, self.control_namespace)
        except InvalidProject as err:
            raise InvalidSpecError(str(err)) from err
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
            # Only what rendering reads: not the rest of a monorepo (kustomize bases and
            # chart dependencies outside the folder are added as the checkout names them).
            return sha, checkout_reads(
                Source.from_spec(app.spec, app.name),
                lambda paths: self.cache.checkout(source["repoURL"], sha, creds, paths=paths),
            )
        except TooLarge as err:
            raise ComparisonError(str(err)) from err  # it will not pass by itself: no quick retry
        except GitError as err:
            raise ComparisonError(str(err), transient=True) from err

    def head(self, app: Application) -> str:
        """The commit the Application's targetRevision points at now (no checkout)."""
        self.identity(app)  # the Project's and the operator's checks before any fetch
        source = app.spec["source"]
        try:
            revision = source.get("targetRevision") or "HEAD"
            return self.cache.resolve(source["repoURL"], revision, self._credentials(app))
        except GitError as err:
            raise ComparisonError(str(err), transient=True) from err

    def desired(
        self, app: Application, tree: Path, project: Project, applier: Applier
    ) -> tuple[list[dict[str, Any]], set[Key], list[Hook]]:
        """The rendered objects, checked against the Project and marked with our tracking
        annotation and label; those of kinds the cluster does not know yet but a CRD of
        the same source defines (created at sync time, after their CRD); and the hooks
        (checked against the Project too, marked only as hooks of this Application)."""
        # The same checkout rendered the same way gives the same objects: a resync of an
        # unchanged revision skips rendering (only the last render of each Application kept).
        fingerprint = json.dumps(
            [str(tree), app.spec.get("source"), app.destination, app.name], sort_keys=True
        )
        last = self._renders.get(app.id)
        if last is not None and last[0] == fingerprint:
            objects = last[1]
        else:
            try:
                objects = render(
                    tree,
                    Source.from_spec(app.spec, app.name),
                    app.destination,
                    self.helm,
                    limits=self.limits,
                    failures=self.render_failures,  # `tree` is one commit's checkout
                    scratch=self.scratch,
                )
            except RenderError as err:
                raise ComparisonError(str(err)) from err
            if self.memo is not None:
                self._renders[app.id] = (fingerprint, objects)
        defined = crd_kinds(objects)
        out, pending, hook_list = [], set(), []
        for raw in objects:
            # Only metadata is changed below; the rest stays shared with the render (cached).
            obj = {**raw, "metadata": copy.deepcopy(raw.get("metadata") or {})}
            meta = obj["metadata"]
            try:
                phases = hooks.phases(obj)
                policies = hooks.policies(obj) if phases else set()
            except HookError as err:
                raise ComparisonError(str(err)) from err
            if phases == []:
                continue  # Skip, or Helm's test hooks
            if phases is None and not meta.get("name"):
                raise ComparisonError(
                    f"{obj['kind']} {meta.get('generateName')}: metadata.generateName is for "
                    "hooks only (argocd.argoproj.io/hook); an object of the Application needs "
                    "a metadata.name"
                )
            later = False
            try:
                namespaced = applier.namespaced(obj)
            except ApplyError as err:
                scope = defined.get((obj["apiVersion"], obj["kind"]))
                if scope is None:
                    raise ComparisonError(str(err)) from err
                namespaced, later = scope == "Namespaced", True
            if namespaced:
                meta["namespace"] = meta.get("namespace") or app.destination
            else:
                meta.pop("namespace", None)
            if phases:
                key = Key.of({**obj, "metadata": {**meta, "name": meta.get("name") or "?"}})
            else:
                key = Key.of(obj)
            try:
                project.check_object(key, namespaced)
            except NotAllowed as err:
                raise ComparisonError(str(err)) from err
            if phases:
                # No tracking annotation: a hook is never pruned, nor taken for an object.
                meta.setdefault("annotations", {})[HOOK_OF_ANNOTATION] = (
                    f"{app.namespace}_{app.name}"
                )
                meta["annotations"].pop(TRACKING_ANNOTATION, None)
                hook_list += [Hook(p, obj, hooks.hook_wave(obj), policies) for p in phases]
                continue
            meta.setdefault("annotations", {})[TRACKING_ANNOTATION] = tracking_id(
                app.namespace, app.name, key
            )
            meta["labels"] = {**(meta.get("labels") or {}), TRACKING_LABEL: "true"}
            out.append(obj)
            if later:
                pending.add(key)
        return out, pending, hook_list

    def compare(self, app: Application) -> Comparison:
        project, user = self.identity(app)
        applier = self.applier(user)
        sha, tree = self.fetch(app)
        objects, pending, hook_list = self.desired(app, tree, project, applier)
        keys = [Key.of(o) for o in objects]
        seen: set[Key] = set()
        for key in keys:
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
        inventory = [k for k in self._inventory(app) if k not in seen]
        reader = Reader(self, applier, user)
        # Every informer this compare needs lists at once (a missing namespace has nothing).
        needed = [k for k in keys if k not in pending] + [
            k for k in inventory if k.namespace not in missing_ns
        ]
        reader.prepare(needed, skip=missing_ns)
        reader.fetch_unlabelled(needed)
        items, errors, to_dry_run = [], [], []
        ignore_rules = list(app.spec.get("ignoreDifferences") or [])
        respect = "RespectIgnoreDifferences=true" in app.sync_options
        for obj, key in zip(objects, keys, strict=True):
            item = Item(key, obj, None, None)
            items.append(item)
            if key in pending:
                continue  # its kind comes with this sync: created after its CRD
            if key.namespace in missing_ns:
                if key.namespace not in planned:
                    errors.append(f"{key}: namespace {key.namespace} does not exist")
                continue  # otherwise validated at sync time, once its namespace exists
            try:
                item.live = reader.get(key)
            except ApiException as err:
                errors.append(f"{key}: {api_message(err)}")
                continue
            if ignore_rules:
                full = item.live
                rules = matching(ignore_rules, key)
                if full is not None and any(r.get("managedFieldsManagers") for r in rules):
                    # The cache keeps no managedFields: who owns what needs a GET.
                    try:
                        full = applier.get(
                            key.api_version, key.kind, key.name, key.namespace or None
                        )
                    except ApiException as err:
                        errors.append(f"{key}: {api_message(err)}")
                        continue
                item.ignore = ignored_pointers(rules, key, full)
                if item.ignore and respect and item.live is not None:
                    obj = item.desired = respecting(obj, item.live, item.ignore)
            if self.memo is not None:
                # What is ignored is part of the verdict: a change of the rules, a new one.
                item.digest = digest({**obj, "\0ignore": item.ignore} if item.ignore else obj)
                verdict = self.memo.lookup(app.id, user, key, item.digest, item.live)
                if verdict is not None:
                    if verdict.in_sync:
                        item.known_in_sync = True
                    else:
                        item.dry_run = verdict.dry_run
                    continue
            to_dry_run.append(item)

        answers = applier.apply_each(
            [i.desired for i in to_dry_run],
            dry_run=True,
            concurrency=self.concurrency,
            hows=[how(app.sync_options, i) for i in to_dry_run],
        )
        for item, answer in zip(to_dry_run, answers, strict=True):
            if isinstance(answer, ApplyError):
                errors.append(str(answer))
                continue
            item.dry_run = answer
            if self.memo is not None:
                self.memo.record(
                    app.id,
                    user,
                    item.key,
                    item.digest,
                    without(item.live, item.ignore),
                    without(answer, item.ignore) or answer,
                )
        if errors:
            raise ComparisonError(
                "; ".join(errors[:5])
                + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
            )
        if self.memo is not None:
            self.memo.retain(app.id, seen)
        if self.live is not None:
            self.live.use(app.id, reader.used)
        prune = self.tracked(app, applier, keys=inventory, reader=reader)
        return Comparison(sha, items, prune, create_ns, user, hook_list)

    def _inventory(self, app: Application) -> list[Key]:
        return [
            Key(
                entry.get("group", ""),
                entry.get("version", ""),
                entry["kind"],
                entry.get("namespace", ""),
                entry["name"],
            )
            for entry in app.inventory
            if entry.get("kind") and entry.get("name")
        ]

    def tracked(
        self,
        app: Application,
        applier: Applier,
        keys: list[Key] | None = None,
        reader: Reader | None = None,
    ) -> list[tuple[Key, dict[str, Any]]]:
        """The live objects of the inventory (or of `keys`) that still carry this
        Application's tracking annotation (so never an object someone else owns now).
        Without a `reader`, straight from the API server."""
        out = []
        for key in self._inventory(app) if keys is None else keys:
            try:
                if reader is not None:
                    live = reader.get(key)
                else:
                    live = applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            except ApplyError:
                continue  # its kind is gone from the cluster, and so is it
            except ApiException as err:
                busy = err.status == 429 or (err.status or 0) >= 500
                raise ComparisonError(f"{key}: {api_message(err)}", transient=busy) from err
            if live is not None and tracked_by(live, app.namespace, app.name):
                out.append((key, live))
        return out

    def forget(self, app_id: str) -> None:
        """The Application is gone: its verdicts and its uses of the cache go too."""
        self._renders.pop(app_id, None)
        self._operations.pop(app_id, None)
        if self.memo is not None:
            self.memo.forget(app_id)
        if self.live is not None:
            self.live.forget(app_id)

    def cascade(self, app: Application, wait: bool = True) -> list[str]:
        """Delete what the Application tracks (as its ServiceAccount); what still exists
        (with `wait` False, Argo's background deletion: nothing, once each is asked to go).
        Its source is not checked: a repository the Project refuses now, or one gone, must
        not keep the Application from going. One that tracks nothing goes at once. The last
        sync's hook runs that are still there go too (marked as this Application's hooks)."""
        if not self._inventory(app) and not app.hook_runs:
            return []
        project = self.project(app)
        try:
            user = impersonated_user(project.service_account(app.destination))
        except InvalidProject as err:
            raise InvalidSpecError(str(err)) from err
        applier = self.applier(user)
        remaining = []
        for key, live in [*self.tracked(app, applier), *self._hooks_left(app, applier)]:
            if not (live.get("metadata") or {}).get("deletionTimestamp"):
                try:
                    applier.delete(key.api_version, key.kind, key.name, key.namespace or None)
                except (ApplyError, ApiException) as err:
                    raise SyncError(f"delete {key}: {err}") from err
            if wait:
                remaining.append(str(key))
        return remaining

    def _hooks_left(self, app: Application, applier: Applier) -> list[tuple[Key, Any]]:
        """The last sync's hook runs still live and marked as this Application's."""
        mark = f"{app.namespace}_{app.name}"
        out = []
        for run in app.hook_runs:
            if not run.get("name") or not run.get("kind") or not run.get("version"):
                continue
            key = Key(
                str(run.get("group") or ""),
                str(run["version"]),
                str(run["kind"]),
                str(run.get("namespace") or ""),
                str(run["name"]),
            )
            try:
                live = applier.get(key.api_version, key.kind, key.name, key.namespace or None)
            except (ApplyError, ApiException) as err:
                raise SyncError(f"read hook {key}: {err}") from err
            notes = ((live or {}).get("metadata") or {}).get("annotations") or {}
            if live is not None and notes.get(HOOK_OF_ANNOTATION) == mark:
                out.append((key, live))
        return out

    # -- sync -------------------------------------------------------------------------------
    def sync(self, app: Application, comparison: Comparison, prune: bool) -> tuple[str, str]:
        """Apply; ("Succeeded"|"Running", message). Raises SyncError when the API refuses or
        a hook fails (after starting the SyncFail hooks). Argo's phases: PreSync hooks (each
        wave's done before the next), then the objects and Sync hooks wave by wave, then,
        once every object is Healthy, the PostSync hooks. "Running": called again (the same
        revision) it goes on where it waits."""
        applier = self.applier(comparison.user)
        op = self._operations.get(app.id)
        if op is None or op.revision != comparison.revision:
            op = self._operations[app.id] = Operation(comparison.revision)
        try:
            with self.memo.sync_of(app.id) if self.memo is not None else contextlib.nullcontext():
                phase, message = self._sync(app, comparison, prune, applier, op)
        except SyncError:
            self._sync_failed(comparison, applier, op)
            comparison.hook_results = list(op.results.values())
            self._operations.pop(app.id, None)
            raise
        comparison.hook_results = list(op.results.values())
        if phase != "Running":
            self._operations.pop(app.id, None)
        return phase, message

    def _sync(
        self, app: Application, comparison: Comparison, prune: bool, applier: Applier, op: Operation
    ) -> tuple[str, str]:
        if comparison.create_namespace and not self._namespace_exists(app.destination):
            try:
                client.CoreV1Api(applier.api).create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=app.destination))
                )
            except ApiException as err:
                raise SyncError(f"create namespace {app.destination}: {api_message(err)}") from err
        waiting = self._run_hooks(comparison, applier, op, hooks.PRE_SYNC)
        if waiting:
            return "Running", waiting
        options = app.sync_options
        waves = {
            wave_of(objects[0]): objects for objects in order(i.desired for i in comparison.items)
        }
        numbers = sorted(set(waves) | {h.wave for h in comparison.hooks if h.phase == hooks.SYNC})
        items = {id(i.desired): i for i in comparison.items}
        prune_last = "PruneLast=true" in options
        if prune and not prune_last:
            self._prune(comparison, applier, propagation(options))
        for index, number in enumerate(numbers):
            objects = waves.get(number, [])
            # Argo's kind order between kinds (Namespaces, then CRDs, ... custom resources
            # last); the objects of one kind in parallel, `concurrency` at a time.
            for group in by_kind(objects):
                # Only what the dry run showed would change (Argo's ApplyOutOfSyncOnly).
                todo = [items[id(o)] for o in group if not items[id(o)].in_sync]
                for item in todo:
                    if item.live is None and item.dry_run is None:
                        self._await_kind(applier, item.key)
                answers = applier.apply_each(
                    [i.desired for i in todo],
                    concurrency=self.concurrency,
                    hows=[how(options, i) for i in todo],
                )
                failed = []
                for item, answer in zip(todo, answers, strict=True):
                    if isinstance(answer, ApplyError):
                        failed.append(str(answer))
                    else:
                        self._applied(app, applier, item, answer)
                if failed:
                    raise SyncError(failed[0])
            # A wave's Sync hooks finish before the next wave (and before PostSync).
            waiting = self._run_hooks(comparison, applier, op, hooks.SYNC, number)
            if waiting:
                return "Running", waiting
            if self.wave_health_gate and index < len(numbers) - 1:
                unhealthy = self._unhealthy(objects, comparison.user)
                if unhealthy:
                    return "Running", (
                        f"waiting for wave {index + 1} of {len(numbers)} to be healthy: "
                        f"{unhealthy[0]}"
                    )
        if prune and prune_last:
            self._prune(comparison, applier, propagation(options))
        if any(h.phase == hooks.POST_SYNC for h in comparison.hooks):
            unhealthy = self._unhealthy([i.desired for i in comparison.items], comparison.user)
            if unhealthy:
                return "Running", f"waiting for every object to be healthy: {unhealthy[0]}"
            waiting = self._run_hooks(comparison, applier, op, hooks.POST_SYNC)
            if waiting:
                return "Running", waiting
        self._watch_created(app, applier, comparison)
        ran = len([r for r in op.results.values() if r["hookPhase"] == hooks.DONE])
        return "Succeeded", f"synced {len(comparison.items)} objects" + (
            f" and ran {ran} hooks" if ran else ""
        )

    def _unhealthy(self, objects: list[dict[str, Any]], user: str) -> list[str]:
        return [
            f"{Key.of(o)}: {msg or status}"
            for o in objects
            for status, msg in [self.health(Key.of(o), user)]
            if status not in (health.HEALTHY, health.SUSPENDED)
        ]

    # -- hooks ------------------------------------------------------------------------------
    def _run_hooks(
        self,
        comparison: Comparison,
        applier: Applier,
        op: Operation,
        phase: str,
        number: int | None = None,
    ) -> str | None:
        """Start the hooks of `phase` (of wave `number`; None: every wave in turn) not yet
        started by this operation and look at each run: what one still waits for, else None.
        A failed run raises SyncError."""
        todo = [
            (i, h)
            for i, h in enumerate(comparison.hooks)
            if h.phase == phase and (number is None or h.wave == number)
        ]
        if number is None:
            for each in sorted({h.wave for _, h in todo}):
                waiting = self._run_hooks(comparison, applier, op, phase, each)
                if waiting:
                    return waiting
            return None
        runs_waiting = []
        for index, hook in todo:
            run = (phase, index)
            done = op.results.get(run)
            if done is not None and done["hookPhase"] != hooks.RUNNING:
                continue
            name = op.runs.get(run)
            if name is None:
                name = self._start_hook(applier, hook)
                if name is None:
                    runs_waiting.append(f"{hook.label}: its previous run is still being deleted")
                    continue
                op.runs[run] = name
            meta = hook.obj["metadata"]
            try:
                live = applier.get(
                    hook.obj["apiVersion"], hook.obj["kind"], name, meta.get("namespace")
                )
            except (ApplyError, ApiException) as err:
                raise SyncError(f"{hook.label}: {err}") from err
            verdict, message = hooks.state(live)
            op.results[run] = hook_result(hook, name, verdict, message)
            if verdict == hooks.RUNNING:
                runs_waiting.append(f"{hook.label} ({name}): {message}")
            elif verdict == hooks.DONE:
                if hooks.SUCCEEDED in hook.policies:
                    self._delete_hook(applier, hook, name)
            else:
                if hooks.FAILED in hook.policies:
                    self._delete_hook(applier, hook, name)
                raise SyncError(f"{hook.label} ({name}) failed: {message}")
        return f"runs_waiting for {runs_waiting[0]}" if runs_waiting else None

    def _start_hook(self, applier: Applier, hook: Hook) -> str | None:
        """Create a run of `hook`: its name, or None while its previous run (same name,
        BeforeHookCreation) is still going away. Without BeforeHookCreation a run of that
        name that exists already is this sync's run (as Argo's apply would leave it)."""
        obj = copy.deepcopy(hook.obj)
        meta = obj["metadata"]
        where = meta.get("namespace")
        if meta.get("name"):
            try:
                existing = applier.get(obj["apiVersion"], obj["kind"], meta["name"], where)
                if existing is not None:
                    if hooks.BEFORE_CREATION not in hook.policies:
                        return str(meta["name"])
                    if not (existing.get("metadata") or {}).get("deletionTimestamp"):
                        self._delete_hook(applier, hook, meta["name"])
                    if applier.get(obj["apiVersion"], obj["kind"], meta["name"], where):
                        return None
            except (ApplyError, ApiException) as err:
                raise SyncError(f"{hook.label}: {err}") from err
        try:
            created = applier.create(obj)
        except ApplyError as err:
            if "already exists" in str(err):
                return None  # its previous run went a moment too late: the next call
            raise SyncError(str(err)) from err
        return str(created["metadata"]["name"])

    def _delete_hook(self, applier: Applier, hook: Hook, name: str) -> None:
        try:
            # Background: the run goes at once (its pods after it), so a new one may start.
            applier.delete(
                hook.obj["apiVersion"],
                hook.obj["kind"],
                name,
                hook.obj["metadata"].get("namespace"),
                propagation="Background",
            )
        except (ApplyError, ApiException) as err:
            raise SyncError(f"delete {hook.label} ({name}): {err}") from err

    def _sync_failed(self, comparison: Comparison, applier: Applier, op: Operation) -> None:
        """The sync failed: start its SyncFail hooks (not waited for: the sync has ended)."""
        for index, hook in enumerate(comparison.hooks):
            if hook.phase != hooks.SYNC_FAIL or (hook.phase, index) in op.runs:
                continue
            try:
                name = self._start_hook(applier, hook)
            except SyncError as err:
                op.results[(hook.phase, index)] = hook_result(hook, "", hooks.BROKEN, str(err))
                continue
            if name is not None:
                op.runs[(hook.phase, index)] = name
                op.results[(hook.phase, index)] = hook_result(hook, name, hooks.RUNNING, "started")

    def _watch_created(self, app: Application, applier: Applier, comparison: Comparison) -> None:
        """Informers for what this sync made where the compare had none (a namespace or a
        kind that did not exist yet): its objects' events must wake the Application too."""
        if self.live is None:
            return
        reader = Reader(self, applier, comparison.user)
        missing = [
            i.key
            for i in comparison.items
            if not ((found := self.live.informers.get(reader.informer_key(i.key))) and found.usable)
        ]
        if missing:
            reader.prepare(missing, skip=set())
            self.live.add_use(app.id, reader.used)

    def _prune(self, comparison: Comparison, applier: Applier, propagation: str) -> None:
        for key, _live in comparison.prune:
            try:
                applier.delete(
                    key.api_version, key.kind, key.name, key.namespace or None, propagation
                )
            except ApplyError as err:
                raise SyncError(f"prune {key}: {err}") from err
            except ApiException as err:
                raise SyncError(f"prune {key}: {api_message(err)}") from err
        comparison.prune = []

    def _applied(
        self, app: Application, applier: Applier, item: Item, applied: dict[str, Any]
    ) -> None:
        # What the server now holds is both the live object and git's: in sync.
        item.live = item.dry_run = applied
        item.known_in_sync = False
        user = applier.api.default_headers.get("Impersonate-User", "")
        if self.memo is not None:
            self.memo.record(
                app.id, user, item.key, item.digest or digest(item.desired), applied, applied
            )
        if self.live is not None:
            ikey = informer_key(user, item.key)
            informer = self.live.informers.get(ikey)
            if informer is not None and informer.usable:
                informer.put(copy.copy(applied))
                self.live.recheck(ikey, applied)  # a drift that came before this record

    def _await_kind(self, applier: Applier, key: Key, timeout: float = 60) -> None:
        """A kind whose CRD this sync has just applied: wait until the API serves it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                applier.resource(key.api_version, key.kind)
                return
            except ApplyError as err:
                if time.monotonic() > deadline:
                    raise SyncError(str(err)) from err
                time.sleep(0.5)

    def health(self, key: Key, user: str) -> tuple[str, str]:
        try:
            live = Reader(self, self.applier(user), user).get(key)
        except (ApplyError, ApiException):
            live = None
        return health.of(live)

    # -- helpers ----------------------------------------------------------------------------
    def _namespace_exists(self, name: str) -> bool:
        """Whether the namespace is there; a yes is believed for NAMESPACE_SEEN_TTL (one
        deleted meanwhile fails the dry run, a transient error retried), a no never."""
        now = time.monotonic()
        if now - self._namespaces.get(name, -math.inf) < NAMESPACE_SEEN_TTL:
            return True
        try:
            self.core.read_namespace(name)
        except ApiException as err:
            if err.status == 404:
                self._namespaces.pop(name, None)
                return False
            raise
        self._namespaces[name] = now
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


def hook_result(hook: Hook, name: str, verdict: str, message: str) -> dict[str, Any]:
    """A hook run as Argo shows it in operationState.syncResult.resources."""
    group, _, version = hook.obj["apiVersion"].rpartition("/")
    return {
        "group": group,
        "version": version,
        "kind": hook.obj["kind"],
        "namespace": hook.obj["metadata"].get("namespace") or "",
        "name": name,
        "hookType": hook.phase,
        "hookPhase": verdict,
        "syncPhase": hook.phase,
        "status": "Synced" if name else "SyncFailed",
        "message": message,
    }


def crd_kinds(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> scope of what the CustomResourceDefinitions among `objects`
    define: their custom resources may come in the same sync."""
    out: dict[tuple[str, str], str] = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition" or not str(
            obj.get("apiVersion", "")
        ).startswith("apiextensions.k8s.io/"):
            continue
        spec = obj.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            if isinstance(version, dict) and spec.get("group") and kind and version.get("name"):
                out[(f"{spec['group']}/{version['name']}", str(kind))] = str(
                    spec.get("scope") or "Namespaced"
                )
    return out


def by_kind(objects: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A wave (in kind order) cut where the kind's rank changes."""
    groups: list[list[dict[str, Any]]] = []
    last = None
    for obj in objects:
        rank = KIND_ORDER.index(obj["kind"]) if obj["kind"] in KIND_ORDER else len(KIND_ORDER)
        if rank != last:
            groups.append([])
            last = rank
        groups[-1].append(obj)
    return groups


# More objects missing from one informer than this: a metadata-only list of its collection
# costs the API server less than a GET each.
GETS_OVER_A_LIST = 16


def informer_key(user: str, key: Key) -> InformerKey:
    """The informer of `key`'s kind and namespace as `user`: only objects with our tracking
    label, so the cache never holds what else lives in a destination namespace."""
    return InformerKey(user, key.api_version, key.kind, key.namespace, label=TRACKING_LABEL)


class Reader:
    """The live objects one compare reads, as its Application's identity: from the live
    cache's informers where they serve (synced, list and watch permitted), else one GET.
    The informers hold only labelled objects: one they lack is read with a GET too (made by
    hand, or applied by a Herd before the label, it must be seen to be adopted or pruned)."""

    def __init__(self, engine: Engine, applier: Applier, user: str) -> None:
        self.live = engine.live
        self.applier = applier
        self.user = user
        self.concurrency = engine.concurrency
        self.used: set[InformerKey] = set()
        self._informers: dict[InformerKey, Informer] = {}
        self._fetched: dict[Key, dict[str, Any] | None] = {}  # fetch_unlabelled's answers

    def informer(self, key: Key, wait: bool = True) -> Informer | None:
        if self.live is None:
            return None
        ikey = self.informer_key(key)
        informer = self._informers.get(ikey)
        if informer is None:
            resource = self.applier.resource(key.api_version, key.kind)
            path = resource_path(resource, namespace=key.namespace or None)
            informer = self._informers[ikey] = self.live.informer(ikey, path, wait=False)
            self.used.add(ikey)
        if wait:
            informer.synced.wait(self.live.sync_timeout)
        return informer

    def informer_key(self, key: Key) -> InformerKey:
        return informer_key(self.user, key)

    def prepare(self, keys: Iterable[Key], skip: set[str]) -> None:
        """Start every informer `keys` need at once, then wait for their lists."""
        if self.live is None:
            return
        started = []
        for key in keys:
            if key.namespace in skip:
                continue
            try:
                informer = self.informer(key, wait=False)
            except ApplyError:
                continue  # no such kind (any more): get() says so
            if informer is not None:
                started.append(informer)
        wait_synced(set(started), self.live.sync_timeout)

    def fetch_unlabelled(self, keys: Iterable[Key]) -> None:
        """What the prepared informers lack, read at once: a GET each, `concurrency` in
        flight; where an informer lacks many (a first sync's new objects), one metadata-only
        list of its collection first says which of them exist at all, so that thousands of
        new objects do not cost a request each."""
        if self.live is None:
            return
        missing: dict[Informer, list[Key]] = {}
        for key in keys:
            informer = self._informers.get(self.informer_key(key))
            if informer is not None and informer.usable and informer.get(key.name) is None:
                missing.setdefault(informer, []).append(key)
        todo = []
        for informer, lacking in missing.items():
            if len(lacking) > GETS_OVER_A_LIST:
                try:
                    exist = informer.names()
                except ApiException:
                    exist = None  # not served as metadata (an aggregated API?): GET each
                if exist is not None:
                    for key in lacking:
                        if key.name not in exist:
                            self._fetched[key] = None
                    lacking = [k for k in lacking if k.name in exist]
            todo += lacking
        answers = self.applier.get_each(
            [(k.api_version, k.kind, k.name, k.namespace or None) for k in todo],
            self.concurrency,
        )
        for key, answer in zip(todo, answers, strict=True):
            if not isinstance(answer, Exception):  # an error: get() asks again, and raises
                self._fetched[key] = answer

    def get(self, key: Key) -> dict[str, Any] | None:
        informer = self.informer(key)
        if informer is not None and informer.usable:
            found = informer.get(key.name)
            if found is not None or not informer.key.label:
                return found
            if key in self._fetched:
                return self._fetched[key]
        return self.applier.get(key.api_version, key.kind, key.name, key.namespace or None)
