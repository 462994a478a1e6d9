"""Pure parts of the live cache and the incremental compare: verdicts and when they still
hold, which events wake an Application, the debouncer, CRD-defined kinds, kind groups."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from herd_operator.gitops.cache import strip
from herd_operator.gitops.engine import by_kind, crd_kinds
from herd_operator.gitops.events import Debouncer, wakes
from herd_operator.gitops.incremental import Memo, digest
from herd_operator.gitops.plan import Key

KEY = Key("", "v1", "ConfigMap", "ns", "a")
USER = "system:serviceaccount:ns:sync"


def cm(rv: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": rv, **meta},
        "data": data,
    }


def test_a_verdict_holds_only_while_desired_live_and_identity_are_unchanged() -> None:
    memo = Memo(revalidate=600)
    desired = cm("", {"k": "1"})
    live = cm("5", {"k": "1"})
    d = digest(desired)
    verdict = memo.record("ns/app", USER, KEY, d, live, cm("5", {"k": "1"}))
    assert verdict.in_sync and verdict.dry_run is None  # nothing kept while in sync
    assert memo.lookup("ns/app", USER, KEY, d, live) is verdict
    assert memo.lookup("ns/app", USER, KEY, digest(cm("", {"k": "2"})), live) is None
    assert memo.lookup("ns/app", USER, KEY, d, cm("6", {"k": "1"})) is None  # live changed
    assert memo.lookup("ns/app", USER, KEY, d, None) is None  # deleted
    assert memo.lookup("ns/app", "system:serviceaccount:ns:other", KEY, d, live) is None
    assert memo.lookup("ns/other", USER, KEY, d, live) is None


def test_verdicts_expire_for_a_periodic_revalidation() -> None:
    memo = Memo(revalidate=0.05)
    live = cm("5", {"k": "1"})
    d = digest(cm("", {"k": "1"}))
    memo.record("ns/app", USER, KEY, d, live, live)
    time.sleep(0.1)  # past 1.25 x revalidate, whatever the spread
    assert memo.lookup("ns/app", USER, KEY, d, live) is None


def test_out_of_sync_verdicts_keep_the_dry_run_for_diffs() -> None:
    memo = Memo(revalidate=600)
    dry = cm("5", {"k": "2"})
    verdict = memo.record("ns/app", USER, KEY, b"x", cm("5", {"k": "1"}), dry)
    assert not verdict.in_sync and verdict.dry_run == dry


def test_watchers_forget_what_an_app_no_longer_renders() -> None:
    memo = Memo(revalidate=600)
    live = cm("5", {"k": "1"})
    memo.record("ns/one", USER, KEY, b"x", live, live)
    memo.record("ns/two", USER, KEY, b"x", live, live)
    watched = Memo.watched(USER, KEY)
    assert sorted(a for a, _ in memo.watchers(watched)) == ["ns/one", "ns/two"]
    memo.retain("ns/one", set())
    assert [a for a, _ in memo.watchers(watched)] == ["ns/two"]
    memo.forget("ns/two")
    assert memo.watchers(watched) == []
    # Another identity's view of the same object is another watched object.
    assert memo.watchers(Memo.watched("system:serviceaccount:x:y", KEY)) == []


def test_which_events_wake_an_application() -> None:
    memo = Memo(revalidate=600)
    live = cm("5", {"k": "1"})
    verdict = memo.record("ns/app", USER, KEY, b"x", live, live)
    assert not wakes(verdict, live, live)  # what the compare saw
    assert not wakes(verdict, live, cm("6", {"k": "1"}, labels=None))  # same content
    assert wakes(verdict, live, cm("6", {"k": "hand"}))  # drift
    assert wakes(verdict, live, None)  # deleted
    missing = memo.record("ns/app", USER, KEY, b"x", None, live)
    assert not missing.in_sync
    assert wakes(missing, None, cm("7", {"k": "1"}))  # someone made it as git has it
    # The app's own sync applying it: no news (its event may come before the sync records
    # it); a drift during the sync still is.
    with memo.sync_of("ns/app"):
        assert memo.syncing("ns/app") and not memo.syncing("ns/other")
        assert not wakes(missing, None, cm("7", {"k": "1"}), memo.syncing("ns/app"))
        assert wakes(verdict_of(memo, "ns/app"), None, cm("8", {"k": "hand"}), True)
    assert not memo.syncing("ns/app")
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "resourceVersion": "1", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1},
    }
    ready = {
        **dep,
        "metadata": {**dep["metadata"], "resourceVersion": "2"},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    key = Key("apps", "v1", "Deployment", "", "d")
    verdict = memo.record("ns/app", USER, key, b"x", dep, dep)
    assert wakes(verdict, dep, ready)  # its health changed (status is not compared)


def verdict_of(memo: Memo, app: str) -> Any:
    return memo._apps[app][1][KEY]


def test_debouncer_fires_once_per_burst() -> None:
    fired: list[str] = []
    done = threading.Event()

    def fire(app: str) -> None:
        fired.append(app)
        done.set()

    debouncer = Debouncer(0.2, fire)
    for _ in range(50):
        debouncer.request("ns/a")
    debouncer.request("ns/b")
    assert done.wait(5)
    time.sleep(0.4)
    assert sorted(fired) == ["ns/a", "ns/b"]
    debouncer.request("ns/a")
    time.sleep(0.5)
    assert sorted(fired) == ["ns/a", "ns/a", "ns/b"]


def test_cache_keeps_objects_without_managed_fields() -> None:
    obj = cm("1", {}, managedFields=[{"manager": "x"}])
    assert "managedFields" not in strip(obj)["metadata"]


def test_kinds_a_crd_of_the_same_source_defines() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1"}, {"name": "v2"}],
        },
    }
    assert crd_kinds([crd, cm("", {})]) == {
        ("example.com/v1", "Widget"): "Cluster",
        ("example.com/v2", "Widget"): "Cluster",
    }
    # A look-alike of another group is not a CRD.
    assert crd_kinds([{**crd, "apiVersion": "evil.example.com/v1"}]) == {}


def test_a_wave_is_cut_where_the_kind_changes() -> None:
    objs = [
        {"kind": "Namespace"},
        {"kind": "ConfigMap"},
        {"kind": "ConfigMap"},
        {"kind": "CustomResourceDefinition"},
        {"kind": "Widget"},
        {"kind": "Gadget"},
    ]
    assert [[o["kind"] for o in g] for g in by_kind(objs)] == [
        ["Namespace"],
        ["ConfigMap", "ConfigMap"],
        ["CustomResourceDefinition"],
        ["Widget", "Gadget"],
    ]


class FakeServer:
    """What the informer asks the API server, scripted: a list whose continue token has
    expired (410), a watch that answers 410 Gone, then a relist that shows what changed."""

    def __init__(self) -> None:
        self.lists: list[Any] = [
            {"items": [cm("5", {}, name="a")], "metadata": {"continue": "t1"}},
            ApiException(status=410, reason="Expired"),  # the continue token is too old
            {
                "items": [cm("5", {}, name="a"), cm("6", {}, name="b")],
                "metadata": {"resourceVersion": "10"},
            },
            {
                "items": [cm("12", {"k": "2"}, name="b"), cm("13", {}, name="c")],
                "metadata": {"resourceVersion": "20"},
            },
        ]
        self.watches = [
            [json.dumps({"type": "ERROR", "object": {"code": 410, "message": "too old"}})],
        ]
        self.queries: list[list[tuple[str, str]]] = []
        self.done = threading.Event()

    def call(self, _api: Any, _method: str, _path: str, query: Any = None, **_: Any) -> Any:
        self.queries.append(list(query or []))
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stream(self, _api: Any, _path: str, query: Any, timeout: Any) -> Any:
        self.queries.append(list(query))
        if self.watches:
            return FakeResponse(), iter(self.watches.pop(0))
        self.done.set()

        def block() -> Any:
            threading.Event().wait(5)
            return iter(())

        return FakeResponse(), block()


class FakeResponse:
    def release_conn(self) -> None:
        pass


def test_informer_relists_on_410_and_reports_what_changed(monkeypatch: Any) -> None:
    from herd_operator.gitops import cache

    server = FakeServer()
    monkeypatch.setattr(cache.rawapi, "call", server.call)
    monkeypatch.setattr(cache.rawapi, "stream", server.stream)
    events: list[tuple[str, str]] = []
    informer = cache.Informer(
        cache.InformerKey("u", "v1", "ConfigMap", "ns"),
        api=None,  # type: ignore[arg-type]
        path="/api/v1/namespaces/ns/configmaps",
        listener=lambda _k, kind, old, new: events.append(
            (kind, (new or old or {})["metadata"]["name"])
        ),
        page_size=1,
    ).start()
    try:
        assert server.done.wait(10), server.queries
        assert informer.gone == 2  # the list's expired continue token, then the watch's 410
        assert sorted(informer.objects) == ["b", "c"]
        assert sorted(events) == [("ADDED", "c"), ("DELETED", "a"), ("MODIFIED", "b")]
        assert ("resourceVersion", "10") in server.queries[3]  # watched from the first list
        assert ("continue", "t1") in server.queries[1]
    finally:
        informer.stop()


def test_informers_stop_when_no_application_uses_them(monkeypatch: Any) -> None:
    from kubernetes import client as k8s

    from herd_operator.gitops import cache

    server = FakeServer()
    server.lists = [{"items": [], "metadata": {"resourceVersion": "1"}}] * 4
    server.watches = []
    monkeypatch.setattr(cache.rawapi, "call", server.call)
    monkeypatch.setattr(cache.rawapi, "stream", server.stream)
    live = cache.LiveCache(k8s.Configuration(), sync_timeout=5)
    key = cache.InformerKey("u", "v1", "ConfigMap", "ns")
    informer = live.informer(key, "/api/v1/namespaces/ns/configmaps")
    assert informer.usable
    live.use("ns/one", [key])
    live.use("ns/two", [key])
    live.forget("ns/one")
    assert live.informers.get(key) is informer and informer.usable  # two still uses it
    live.use("ns/two", [])
    assert key not in live.informers and not informer.usable
    # Each identity has its own client: never a shared connection pool or header.
    assert live.client("a").default_headers["Impersonate-User"] == "a"
    assert live.client("b").default_headers["Impersonate-User"] == "b"
    assert "Impersonate-User" not in live.client("").default_headers


def test_a_labelled_informer_asks_only_for_labelled_objects(monkeypatch: Any) -> None:
    """Its list and watch carry the label selector (the API server leaves the rest out), and
    our own apply's answer is held only when it carries the label: no watch event would ever
    update or remove one that does not."""
    from herd_operator.gitops import cache

    server = FakeServer()
    server.lists = [{"items": [], "metadata": {"resourceVersion": "1"}}]
    server.watches = []
    monkeypatch.setattr(cache.rawapi, "call", server.call)
    monkeypatch.setattr(cache.rawapi, "stream", server.stream)
    key = cache.InformerKey("u", "v1", "ConfigMap", "ns", label="example.com/tracked")
    informer = cache.Informer(
        key,
        api=None,  # type: ignore[arg-type]
        path="/api/v1/namespaces/ns/configmaps",
        listener=lambda *_: None,
    ).start()
    try:
        assert server.done.wait(10), server.queries
        assert all(("labelSelector", "example.com/tracked") in q for q in server.queries)
        informer.put(cm("2", {}, name="plain"))
        informer.put(cm("3", {}, name="ours", labels={"example.com/tracked": "true"}))
        assert sorted(informer.objects) == ["ours"]
        count, size = informer.held()
        assert count == 1 and size == len(
            json.dumps(informer.objects["ours"], separators=(",", ":"))
        )
    finally:
        informer.stop()


def test_a_drift_between_an_apply_and_its_record_still_wakes() -> None:
    """A hand edit that lands after our apply but before the sync records it is judged, on
    its event, against the verdict before the apply (and, while syncing, may look like
    nothing): once the apply is recorded, the later version the informer holds is looked at
    again against the new verdict, and wakes its Application."""
    from kubernetes import client as k8s

    from herd_operator.gitops import cache
    from herd_operator.gitops.events import Debouncer, Watcher

    live = cache.LiveCache(k8s.Configuration(), sync_timeout=5)
    key = cache.InformerKey(USER, "v1", "ConfigMap", "ns")
    informer = cache.Informer(key, api=None, path="/x", listener=live._notify)  # type: ignore[arg-type]
    live.informers[key] = informer
    memo = Memo(revalidate=600)
    woken: list[str] = []
    live.listen(Watcher(memo, Debouncer(0, woken.append)))
    told: list[Any] = []
    live.listen(lambda *event: told.append(event))
    applied = cm("6", {"k": "1"})
    informer._upsert(cm("7", {"k": "hand"}), notify=False)  # the edit, already in the cache
    memo.record("ns/app", USER, KEY, b"x", applied, applied)  # the apply, recorded
    live.recheck(key, applied)
    deadline = time.monotonic() + 5
    while not woken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert woken == ["ns/app"] and len(told) == 1
    live.recheck(key, cm("7", {"k": "hand"}))  # nothing later than what was applied: quiet
    assert len(told) == 1
