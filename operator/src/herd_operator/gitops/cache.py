"""A watch-fed cache of the live objects Applications track (Argo CD's cluster cache, in
the small): one informer per (identity, group/version/kind, namespace) that some
Application's desired objects or inventory use, started on first use and stopped when no
Application uses it any more.

Each informer lists, then watches from the list's resourceVersion (bookmarks keep it fresh),
relists on 410 Gone or any broken watch, and keeps the objects without managedFields. A
compare reads live objects here instead of one GET each.

The engine's informers select by label (`InformerKey.label`: the tracking label every sync
sets), so the API server sends them only objects some Application applied: what else lives in
a destination namespace (150 ConfigMaps of 0.8 MB someone else made) is never listed, watched
or held. The engine reads an object such an informer lacks with a GET (one made by hand with
a name git has, not labelled yet, is adopted by the next sync).

The security boundary: an informer lists and watches AS the Project's ServiceAccount it is
keyed by (Impersonate-User), so an Application reads from the cache exactly what a GET as
its own ServiceAccount would show, never what another Project's identity (or the operator)
may see. Two Applications of one identity share informers; two identities never do. An
identity that may get but not list/watch a kind there makes that informer `unusable`, and
the engine falls back to one GET per object for it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_operator.gitops import rawapi

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InformerKey:
    user: str  # the impersonated identity every request of this informer carries; "": the
    # operator itself, only for Namespaces (whose deletion wakes the Applications in them)
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    label: str = ""  # only objects that carry this label (its key; any value); "": all

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        labelled = f" labelled {self.label}" if self.label else ""
        return f"{self.api_version}/{self.kind}{where}{labelled} as {self.user}"

    def selects(self, obj: dict[str, Any]) -> bool:
        return not self.label or self.label in ((obj.get("metadata") or {}).get("labels") or {})


# A list of objects' metadata alone (what kubectl get -o name asks for). Its pages are small:
# an object's annotations alone may be 256 KiB.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_PAGE = 100

# (informer, event type, object before, object after): None before = new, None after = gone.
Listener = Callable[[InformerKey, str, dict[str, Any] | None, dict[str, Any] | None], None]


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of an object: all but managedFields (often half its size)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _rv(obj: dict[str, Any] | None) -> int | None:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    except (TypeError, ValueError):
        return None


class Gone(Exception):
    """410: the resourceVersion we watch from is compacted away; relist."""


class Informer:
    """List+watch of one kind in one namespace (or cluster-wide) as one identity."""

    def __init__(
        self,
        key: InformerKey,
        api: ApiClient,
        path: str,
        listener: Listener,
        page_size: int = 500,
        watch_timeout: int = 300,
    ) -> None:
        self.key = key
        self.api = api
        self.path = path  # the collection's URL (namespaced when key.namespace is set)
        self.listener = listener
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        self.error: str | None = None  # why it cannot serve (e.g. list forbidden)
        self.relists = 0  # lists after the first: 410s and broken watches
        self.gone = 0  # 410 Gone answers
        self._expired = False
        self.users = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"informer {key}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close()

    def get(self, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    @property
    def usable(self) -> bool:
        return self.synced.is_set() and self.error is None and not self._stop.is_set()

    def expire(self) -> None:
        """Drop the watch and resume from a resourceVersion the server has long forgotten
        (tests: the server's own 410 Gone without waiting for a compaction)."""
        self._expired = True
        self.resource_version = "1"
        self._close()

    def put(self, obj: dict[str, Any]) -> None:
        """What our own apply returned: the cache holds it before its watch event arrives,
        so the next compare does not see the object as it was before the apply. Not one the
        label selector leaves out (a webhook dropped the label): no watch event would ever
        update or remove it here."""
        if self.key.selects(obj):
            self._upsert(strip(obj), notify=False)

    def held(self) -> tuple[int, int]:
        """How many objects this informer holds, and their size as JSON (bytes)."""
        with self._lock:
            objects = list(self.objects.values())
        return len(objects), sum(len(json.dumps(o, separators=(",", ":"))) for o in objects)

    def names(self) -> set[str]:
        """The name of every object in this informer's collection, labelled or not: a
        metadata-only list (the API server sends no data, spec or status), held nowhere."""
        names: set[str] = set()
        cont = ""
        while True:
            query = [("limit", str(METADATA_PAGE))] + ([("continue", cont)] if cont else [])
            page = rawapi.call(
                self.api, "GET", self.path, query, timeout=(30, 120), accept=METADATA_ONLY
            )
            names.update(str(i["metadata"]["name"]) for i in page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                return names

    def _selector(self) -> rawapi.Query:
        return [("labelSelector", self.key.label)] if self.key.label else []

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.5
        listed = False
        while not self._stop.is_set():
            try:
                if not listed:
                    self._list()
                    listed = True
                self._watch()
                delay = 0.5
            except Gone:
                log.info("%s: resourceVersion gone, relisting", self.key)
                listed = False
                self.relists += 1
                self.gone += 1
                self._expired = False
            except ApiException as err:
                if self._stop.is_set():
                    return
                if err.status in (401, 403, 404, 405):
                    # Forbidden (now), or no such kind (any more): never serve what we hold;
                    # the engine reads with GETs, as the identity, instead.
                    self.error = f"{err.status} {err.reason}"
                    self.synced.set()
                    return
                log.warning("%s: %s %s; relisting", self.key, err.status, err.reason)
                listed = False
                self.relists += 1
                self._stop.wait(delay)
                delay = min(delay * 2, 30)
            except Exception as err:
                if self._stop.is_set():
                    return
                if self._expired:  # expire() cut the watch: resume from its old version
                    self._expired = False
                    continue
                log.warning("%s: watch broke (%s); relisting", self.key, err)
                listed = False
                self.relists += 1
                self._stop.wait(delay)
                delay = min(delay * 2, 30)

    def _list(self) -> None:
        fresh: dict[str, dict[str, Any]] = {}
        cont = ""
        while True:
            query = [("limit", str(self.page_size)), *self._selector()]
            if cont:
                query.append(("continue", cont))
            try:
                page = rawapi.call(self.api, "GET", self.path, query, timeout=(30, 120))
            except ApiException as err:
                if err.status == 410:
                    raise Gone() from err  # the continue token expired: list again
                raise
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.key.api_version)
                item.setdefault("kind", self.key.kind)
                fresh[item["metadata"]["name"]] = strip(item)
            meta = page.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
        with self._lock:
            old, self.objects = self.objects, fresh
        if self.synced.is_set():
            # A relist: tell the listener what changed while we were not watching.
            for name, obj in old.items():
                if name not in fresh:
                    self.listener(self.key, "DELETED", obj, None)
                elif fresh[name]["metadata"].get("resourceVersion") != obj["metadata"].get(
                    "resourceVersion"
                ):
                    self.listener(self.key, "MODIFIED", obj, fresh[name])
            for name, obj in fresh.items():
                if name not in old:
                    self.listener(self.key, "ADDED", None, obj)
        self.synced.set()

    def _watch(self) -> None:
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self.resource_version),
            ("timeoutSeconds", str(self.watch_timeout)),
            *self._selector(),
        ]
        response, lines = rawapi.stream(
            self.api, self.path, query, timeout=(30, self.watch_timeout + 30)
        )
        self._response = response
        try:
            for line in lines:
                if self._stop.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind == "BOOKMARK":
                    self.resource_version = rv or self.resource_version
                    continue
                if kind == "DELETED":  # deleted, or its label removed (out of the selector)
                    self._delete(strip(obj))
                else:
                    self._upsert(strip(obj), notify=True)
                if rv:
                    self.resource_version = rv
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()

    def _upsert(self, obj: dict[str, Any], notify: bool) -> None:
        obj.setdefault("apiVersion", self.key.api_version)
        obj.setdefault("kind", self.key.kind)
        name = obj["metadata"]["name"]
        with self._lock:
            old = self.objects.get(name)
            new_rv, old_rv = _rv(obj), _rv(old)
            # Never back: our own apply may have put a newer version than this event's.
            if old is not None and new_rv is not None and old_rv is not None and new_rv <= old_rv:
                return
            self.objects[name] = obj
        if notify:
            self.listener(self.key, "MODIFIED" if old else "ADDED", old, obj)

    def _delete(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            old = self.objects.get(name)
            if old is not None and old["metadata"].get("uid") != obj["metadata"].get("uid"):
                return  # a newer object of the same name is already here
            self.objects.pop(name, None)
        self.listener(self.key, "DELETED", old or obj, None)

    def _close(self) -> None:
        """Cut the running watch: its blocking read in the informer's thread fails at once."""
        response = self._response
        if response is None:
            return
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()


class LiveCache:
    """The informers of every identity, started on demand, shared by the Applications of
    one identity, stopped when none uses them."""

    def __init__(
        self,
        base: client.Configuration,
        sync_timeout: float = 60,
        page_size: int = 500,
        watch_timeout: int = 300,
    ) -> None:
        self.base = base
        self.sync_timeout = sync_timeout
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.informers: dict[InformerKey, Informer] = {}
        self._uses: dict[str, set[InformerKey]] = {}  # Application -> what its compare used
        self._clients: dict[str, ApiClient] = {}
        self._listeners: list[Listener] = []
        self._guard = threading.RLock()

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def recheck(self, key: InformerKey, applied: dict[str, Any]) -> None:
        """After our own apply is recorded: should the informer already hold a later version
        (a change that landed between the apply and its record, whose event was judged
        against the verdict before the apply), tell the listeners of it again."""
        informer = self.informers.get(key)
        held = informer.get(applied["metadata"]["name"]) if informer is not None else None
        rv = _rv(held)
        if held is not None and rv is not None and rv > (_rv(applied) or rv):
            self._notify(key, "MODIFIED", applied, held)

    def _notify(
        self, key: InformerKey, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for listener in self._listeners:
            try:
                listener(key, kind, old, new)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("cache listener on %s", key)

    def client(self, user: str) -> ApiClient:
        """An ApiClient for `user`'s watches: its own pool, as each watch holds a connection."""
        with self._guard:
            if user not in self._clients:
                cfg = copy.copy(self.base)
                cfg.connection_pool_maxsize = 256
                api = ApiClient(configuration=cfg)
                if user:  # "" is the operator itself (namespaces only)
                    api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
                self._clients[user] = api
            return self._clients[user]

    def informer(self, key: InformerKey, path: str, wait: bool = True) -> Informer:
        """The running informer of `key` (started if new), synced unless `wait` is False."""
        with self._guard:
            informer = self.informers.get(key)
            if informer is None or informer._stop.is_set() or informer.error:
                stale = informer
                informer = Informer(
                    key,
                    self.client(key.user),
                    path,
                    self._notify,
                    page_size=self.page_size,
                    watch_timeout=self.watch_timeout,
                )
                if stale is not None:
                    informer.users = stale.users
                    stale.stop()
                self.informers[key] = informer.start()
        if wait:
            informer.synced.wait(self.sync_timeout)
        return informer

    def use(self, app: str, keys: Iterable[InformerKey]) -> None:
        """What `app`'s last compare used: informers nobody uses any more are stopped."""
        new = set(keys)
        with self._guard:
            old = self._uses.get(app, set())
            self._uses[app] = new
            for key in new - old:
                if key in self.informers:
                    self.informers[key].users += 1
            for key in old - new:
                self._release(key)

    def add_use(self, app: str, keys: Iterable[InformerKey]) -> None:
        """More informers `app` uses (those its sync started for what it created)."""
        with self._guard:
            self.use(app, self._uses.get(app, set()) | set(keys))

    def forget(self, app: str) -> None:
        with self._guard:
            for key in self._uses.pop(app, set()):
                self._release(key)

    def _release(self, key: InformerKey) -> None:
        informer = self.informers.get(key)
        if informer is None:
            return
        informer.users -= 1
        if informer.users <= 0:
            informer.stop()
            del self.informers[key]

    def held(self) -> tuple[int, int]:
        """Objects held by all informers, and their size as JSON (bytes): what the cache
        costs, as a count rather than the process's RSS."""
        with self._guard:
            informers = list(self.informers.values())
        count = size = 0
        for informer in informers:
            n, b = informer.held()
            count, size = count + n, size + b
        return count, size

    def stop(self) -> None:
        with self._guard:
            for informer in self.informers.values():
                informer.stop()
            self.informers.clear()


def wait_synced(informers: Iterable[Informer], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for informer in informers:
        informer.synced.wait(max(0.0, deadline - time.monotonic()))
