"""Wake Applications from watch events: a tracked object that stops (or starts) matching git,
disappears, or changes health queues its Application at once, debounced so that a burst of
events (a rollout, a relist) wakes it once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from herd_operator.gitops import health
from herd_operator.gitops.cache import InformerKey
from herd_operator.gitops.incremental import Memo, Verdict, resource_version

log = logging.getLogger(__name__)
# Namespaces, watched as the operator itself (its own get/list/watch on namespaces).
NAMESPACES = InformerKey("", "v1", "Namespace", "")


def wakes(
    verdict: Verdict, old: dict[str, Any] | None, new: dict[str, Any] | None, syncing: bool = False
) -> bool:
    """Whether this change of a tracked live object is news to its Application (`syncing`:
    its sync is applying now)."""
    if new is None:
        return verdict.live_rv is not None  # gone (it was there at the last compare)
    if resource_version(new) == verdict.live_rv:
        return False  # what the last compare (or our own apply) saw already
    matches = verdict.matches(new)
    if syncing and matches:
        # The sync's own apply, whose event often comes before the sync records it (that
        # woke every app of a commit for a second reconcile): news only if its health moved
        # (not from "missing": the sync looks at what it made).
        return old is not None and health.of(old)[0] != health.of(new)[0]
    if matches != verdict.in_sync:
        return True  # drift, or drift undone
    return health.of(old)[0] != health.of(new)[0]


class Debouncer:
    """Calls `fire(app)` `delay` seconds after the first request for `app` since it last
    fired; further requests meanwhile add nothing."""

    def __init__(self, delay: float, fire: Callable[[str], None]) -> None:
        self.delay = delay
        self.fire = fire
        self._due: dict[str, float] = {}
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="app-wakeups", daemon=True)
        self._thread.start()

    def request(self, app: str) -> None:
        with self._wake:
            if app not in self._due:
                self._due[app] = time.monotonic() + self.delay
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                ready = [a for a, t in self._due.items() if t <= now]
                for app in ready:
                    del self._due[app]
                if not ready:
                    soonest = min(self._due.values(), default=now + 60)
                    self._wake.wait(max(0.01, soonest - now))
                    continue
            for app in ready:
                try:
                    self.fire(app)
                except Exception:
                    log.exception("waking Application %s", app)


class Watcher:
    """The cache listener: which Applications a live object's change wakes."""

    def __init__(self, memo: Memo, debouncer: Debouncer) -> None:
        self.memo = memo
        self.debouncer = debouncer

    def __call__(
        self, key: InformerKey, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        name = ((new or old or {}).get("metadata") or {}).get("name")
        if not name:
            return
        if key == NAMESPACES:
            if new is None:  # gone: what lived there must be made again (CreateNamespace)
                for app in self.memo.in_namespace(name):
                    self.debouncer.request(app)
            return
        watched = (key.user, key.api_version, key.kind, key.namespace, name)
        for app, verdict in self.memo.watchers(watched):
            if wakes(verdict, old, new, self.memo.syncing(app)):
                self.debouncer.request(app)
