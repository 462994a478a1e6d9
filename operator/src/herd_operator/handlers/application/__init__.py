"""Application: Argo-style sync of a git revision + path. Its scheduling, as kopf runs it.

- `on_change` and `poll` reconcile (compare, sync, status: `reconciler`) when the spec
  changes, a refresh is asked for, a sync retry or the poll interval is due;
- `wake` asks for a refresh now (a tracked object drifted);
- `refresh` answers a push: the matching Applications, found in memory (`wakes.seen`), are
  reconciled now on threads of their own, with no write to each;
- `cascade` deletes what a deleted Application tracks, when its resources finalizer asks;
- `gone` drops a deleted Application's verdicts and watches.
One sync engine serves them all (`engine`). With sharding (`use_sharding`), each replica
works only on the Applications it owns (`mine`), adopts those it gains and forgets those it
loses (`reshard`).
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client

from herd_core import kube
from herd_core.constants import GROUP, VERSION
from herd_operator import sharding
from herd_operator.gitops import git
from herd_operator.gitops.cache import LiveCache
from herd_operator.gitops.engine import Engine
from herd_operator.gitops.events import NAMESPACES, Debouncer, Watcher
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.incremental import Memo
from herd_operator.gitops.render import Limits
from herd_operator.handlers.application import reconciler, wakes
from herd_operator.handlers.application.history import last_healthy
from herd_operator.handlers.application.reconciler import REFRESH_ANNOTATION, parse_time, stamp
from herd_operator.handlers.common import Object, exclusive, fresh
from herd_operator.settings import get_settings

KIND = reconciler.KIND
PLURAL = reconciler.PLURAL
__all__ = ["KIND", "PLURAL", "REFRESH_ANNOTATION", "last_healthy", "parse_time", "stamp"]

_engine: Engine | None = None
_engine_lock = threading.Lock()
_refresher: wakes.Refresher | None = None
_refresher_guard = threading.Lock()


def _always() -> bool:
    return True


_working: Callable[[], bool] = _always  # whether this replica does the work (peering)
_shard: sharding.Membership | None = None  # with sharding: this replica's membership
_diffbase: sharding.MemoryDiffBase | None = None
_owned: set[str] = set()  # the apps this replica owned at the last reshard


def engine() -> Engine:
    global _engine
    if _engine is not None:
        return _engine
    # One engine, however many handler threads ask first at a start: each would start a live
    # cache of its own, whose watches nothing stops.
    with _engine_lock:
        return _engine or _new_engine()


def _new_engine() -> Engine:
    global _engine
    if _engine is None:
        settings = get_settings()
        found = settings.helm or shutil.which("helm")
        if not found:
            raise kopf.PermanentError("no helm: set HERD_HELM or put helm v4 on PATH")
        helm = Path(found)
        cache = RepoCache(
            root=(settings.state_dir / "git").absolute(),
            rewrites=settings.git_url_rewrites,
            known_hosts=settings.ssh_known_hosts,
            max_bytes=settings.git_max_bytes,
        )
        api = client.ApiClient()
        live, memo = None, None
        if settings.app_live_cache:
            live = LiveCache(api.configuration)
            memo = Memo(settings.app_revalidate_interval)
            # A tracked object that drifts, comes back in line, goes or changes health
            # wakes its Application at once (selfHeal then reverts a hand edit).
            live.listen(Watcher(memo, Debouncer(settings.app_event_debounce, _event_wake)))
            live.informer(NAMESPACES, "/api/v1/namespaces", wait=False)
        _engine = Engine(
            api,
            cache,
            helm,
            wave_health_gate=settings.wave_health_gate,
            limits=Limits(
                max_bytes=settings.app_max_rendered_bytes, max_objects=settings.app_max_objects
            ),
            local_sources=settings.local_sources,
            live=live,
            memo=memo,
            concurrency=settings.app_sync_concurrency,
            control_namespace=settings.operator_namespace,
        )
    return _engine


def in_scope(namespace: str | None, **_: Any) -> bool:
    """Kopf's filter: Applications are reconciled only in the configured namespaces (Argo's
    application.namespaces): who may create an Application elsewhere gets nothing from it."""
    return reconciler.in_scope(namespace or "", get_settings())


def cascades(namespace: str | None, body: kopf.Body, **_: Any) -> bool:
    return in_scope(namespace) and reconciler.cascades(body)


def deleted(namespace: str | None, type: str | None = None, **_: Any) -> bool:
    return type == "DELETED" and in_scope(namespace)


def mine(namespace: str | None, name: str | None, **_: Any) -> bool:
    """Kopf's filter of the change handlers: in scope and, with sharding, owned here now."""
    return in_scope(namespace) and (_shard is None or _shard.mine(f"{namespace}/{name}"))


@contextmanager
def owned(key: str) -> Iterator[bool]:
    """Whether this replica may work on `key` now, checked again under the handler (the
    membership may have moved since kopf's filter); the work counts as in flight."""
    if _shard is None:
        yield True
        return
    with _shard.work(key) as ok:
        if ok:
            _owned.add(key)
        yield ok


def _reconcile(obj: Object, settings: Any) -> None:
    key = f"{obj.namespace}/{obj.name}"
    sharding.RECONCILES.labels(key).inc()
    try:
        reconciler.reconcile(obj, cast(Engine, _Fenced(engine(), key)), settings)
    except sharding.Fenced:
        # Ownership moved during the compare: the new owner compares again; nothing written.
        sharding.log.info("%s moved to another replica before its sync", key)


class _Fenced:
    """The engine, with ownership checked again just before a sync applies anything."""

    def __init__(self, engine: Engine, key: str) -> None:
        self._engine, self._key = engine, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        if _shard is not None and not _shard.mine(self._key):
            raise sharding.Fenced(self._key)
        sharding.SYNCS.labels(self._key).inc()
        return self._engine.sync(*args, **kwargs)


def on_change(body: kopf.Body, **_: Any) -> None:
    obj = Object(KIND, PLURAL, body)
    with owned(f"{obj.namespace}/{obj.name}") as ok:
        if not ok:
            return
        with exclusive(obj.uid):
            current = fresh(obj)
            if current is not None:
                _reconcile(current, get_settings())


async def poll(body: kopf.Body, **_: Any) -> None:
    """Kopf's timer, every app_tick for each Application. On the event loop, from Kopf's
    copy: with 1,000 Applications that is hundreds of ticks a second, and each used to take
    a thread to find that nothing is due. Kopf's copy is at most one watch event old, so
    what it misses is due at the next tick; a due one is queued for the wake threads, which
    read it fresh and decide again."""
    key = wakes.app_id(body)
    if _shard is not None and not _shard.mine(key):
        return  # its owner's tick
    if reconciler.due(Object(KIND, PLURAL, body), get_settings(), _now()):
        _queue().request([key], if_due=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cascade(type: str, body: kopf.Body, **_: Any) -> None:
    """Cascade delete, only with Argo's resources finalizer (ours or Argo's name) on the
    Application: what it tracks goes first, then the finalizer, then the Application.
    A raw event handler, not on.delete: that one needs Kopf's own finalizer in place, which a
    merge patch or `kubectl apply` of `finalizers` silently drops."""
    if type == "DELETED" or not body["metadata"].get("deletionTimestamp"):
        return
    obj = Object(KIND, PLURAL, body)
    with owned(f"{obj.namespace}/{obj.name}") as ok:
        if not ok:
            return
        with exclusive(obj.uid):
            reconciler.cascade_delete(obj, engine())


def gone(body: kopf.Body, **_: Any) -> None:
    """A deleted Application's verdicts and watches go with it."""
    if _engine is not None:
        _engine.forget(f"{body['metadata']['namespace']}/{body['metadata']['name']}")
    if _diffbase is not None:
        _diffbase.forget(body["metadata"].get("uid", ""))
    sharding.forget(f"{body['metadata']['namespace']}/{body['metadata']['name']}")


def wake(app_id: str) -> None:
    """Reconcile an Application now: the same refresh the webhook asks for."""
    namespace, _, name = app_id.partition("/")
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {REFRESH_ANNOTATION: stamp()}}},
        )
    except client.ApiException as err:
        if err.status != 404:
            raise


def _event_wake(app_id: str) -> None:
    """A tracked object's change: reconciled here, on the wake threads, when this replica
    works on the app (no write to the Application, no second pass through kopf); else its
    owner is told through the refresh annotation."""
    if _shard.mine(app_id) if _shard is not None else _working():
        _queue().request([app_id])
    else:
        wake(app_id)


def use_peering(working: Callable[[], bool]) -> None:
    """At start-up: whether this replica is the working one, for the push webhook."""
    global _working
    _working = working


def use_sharding(membership: sharding.Membership, diffbase: sharding.MemoryDiffBase) -> None:
    """At start-up, with sharding on: this replica's membership and kopf's diff base."""
    global _shard, _diffbase
    _shard, _diffbase = membership, diffbase
    # Counted when scraped: an app kopf lists after the last reshard is owned all the same.
    sharding.OWNED.set_function(lambda: sum(map(membership.mine, list(wakes.apps_seen))))


def reshard() -> None:
    """Called by the membership when who owns what may have changed: the apps gained are
    adopted (compared now; a Synced app at the same revision is left alone, as any compare
    leaves it), the apps lost are forgotten (their verdicts and watches)."""
    global _owned
    if _shard is None:
        return
    now = {key for key in list(wakes.apps_seen) if _shard.mine(key)}
    gained, lost = sorted(now - _owned), _owned - now
    _owned = now
    if _engine is not None:
        for key in lost:
            _engine.forget(key)
    if gained or lost:
        sharding.log.info(
            "shard %s: %d apps, %d gained, %d lost",
            _shard.identity,
            len(now),
            len(gained),
            len(lost),
        )
    if gained:
        _queue().request(gained)


def _queue() -> wakes.Refresher:
    global _refresher
    with _refresher_guard:  # asked for from the event loop, the webhook and the watches
        if _refresher is None:
            _refresher = wakes.Refresher(_reconcile_now, get_settings().app_wake_workers)
        return _refresher


def seen_changes(namespace: str | None, type: str, body: kopf.Body, **_: Any) -> bool:
    return in_scope(namespace) and wakes.changes(type, body)


seen = wakes.seen


def refresh(urls: set[str], branch: str, default_branch: str | None) -> list[str]:
    """Called by the push webhook: reconcile the matching Applications now. Matched in
    memory and queued, so the answer comes at once whatever their number; a replica that is
    not the working one marks them (the refresh annotation) for the one that is."""
    names = wakes.matching(urls, branch, default_branch)
    pushed = git.ticket()  # the apps share the first fetch begun after the push
    if _shard is not None:
        # Sharded: this replica's apps now; the others' owners are told by the refresh
        # annotation, written off the answer's path.
        ours = [name for name in names if _shard.mine(name)]
        theirs = [name for name in names if name not in set(ours)]
        _queue().request(ours, since=pushed)
        if theirs:
            threading.Thread(target=_wake_all, args=(theirs,), daemon=True).start()
        return names
    if not _working():
        for name in names:
            wake(name)
        return names
    _queue().request(names, since=pushed)
    return names


def _wake_all(names: list[str]) -> None:
    for name in names:
        try:
            wake(name)
        except Exception:
            sharding.log.exception("waking %s", name)


def _reconcile_now(app_id: str, if_due: bool = False) -> None:
    """Reconcile `app_id` now (a push), or only if it is due (a poll tick), read fresh."""
    namespace, _, name = app_id.partition("/")
    raw = kube.get_object(PLURAL, namespace, name)
    if raw is None:
        return
    obj = Object(KIND, PLURAL, kopf.Body(cast(Any, raw)))
    with owned(app_id) as ok:
        if not ok:
            return
        if raw["metadata"].get("deletionTimestamp"):
            # Adopted while its cascade delete waits: this replica carries it on.
            if reconciler.cascades(raw):
                with exclusive(obj.uid):
                    reconciler.cascade_delete(obj, engine())
            return
        with exclusive(obj.uid):
            current = fresh(obj)  # what the lock waited for may have changed it
            settings = get_settings()
            if current is not None and (not if_due or reconciler.due(current, settings, _now())):
                _reconcile(current, settings)
