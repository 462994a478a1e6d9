"""Push webhook wakes and due poll ticks, inside the process: no list of Applications, no
write to each one.

The operator keeps what a push needs to know of each Application (its source) from the watch
kopf runs anyway (`seen`). A push then matches in memory and queues the matching Applications
for a reconcile now, on a few threads of their own (`Refresher`): the webhook answers at once,
whatever the number of Applications. A replica that is not the working one (peering) leaves
the work to that one, through the refresh annotation, as before.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import kopf

from herd_operator.gitops import git, webhook

log = logging.getLogger(__name__)

# By namespace/name: the Application as far as a push is concerned (uid and source).
apps_seen: dict[str, dict[str, Any]] = {}


def app_id(body: Any) -> str:
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


def _slim(body: Any) -> dict[str, Any]:
    return {
        "uid": body["metadata"].get("uid"),
        "spec": {"source": dict((body.get("spec") or {}).get("source") or {})},
    }


def changes(type: str, body: kopf.Body) -> bool:
    """Whether this event changes what apps_seen holds (most do not: status writes)."""
    key = app_id(body)
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return key in apps_seen
    return apps_seen.get(key) != _slim(body)


async def seen(type: str, body: kopf.Body, **_: Any) -> None:
    key = app_id(body)
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        apps_seen.pop(key, None)
    else:
        apps_seen[key] = _slim(body)


def matching(urls: set[str], branch: str, default_branch: str | None) -> list[str]:
    return sorted(
        key
        for key, app in list(apps_seen.items())
        if webhook.matches(app, urls, branch, default_branch)
    )


class Refresher:
    """Applications to reconcile now, each once however often it is asked for while it
    waits, on `workers` threads (a push to a repository of 1,000 Applications queues 1,000;
    they share one fetch of the mirror)."""

    def __init__(self, reconcile: Callable[[str, bool], None], workers: int) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        # Per queued app, the moment a fetch must have begun after (git.fresh_since); None:
        # after its reconcile begins.
        self._since: dict[str, int | None] = {}
        # Queued apps that only a poll tick asked for: reconciled only if still due.
        self._if_due: set[str] = set()
        # Reconciles under way, by app (a push may start one beside another): a tick for one
        # of these is that very reconcile.
        self._running: Counter[str] = Counter()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []

    def request(self, ids: list[str], since: int | None = None, if_due: bool = False) -> None:
        """Queue `ids`; `since` (git.ticket()): a fetch begun after it is fresh enough;
        `if_due` (a poll tick): reconciled only if due when read fresh."""
        with self._ready:
            for key in ids:
                if if_due and key in self._running and key not in self._queued:
                    continue  # its reconcile is under way: the tick finds it due meanwhile
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
                    self._since[key] = since
                    if if_due:
                        self._if_due.add(key)
                else:  # asked again while it waits: the later moment holds
                    before = self._since.get(key)
                    fresher = None if before is None or since is None else max(before, since)
                    self._since[key] = fresher
                    if not if_due:
                        self._if_due.discard(key)  # a push's ask: reconciled in any case
            self._ready.notify(len(ids))
            if not self._threads:
                # In a copy of the caller's context, as kopf's own handler threads run.
                for n in range(self._workers):
                    context = contextvars.copy_context()
                    thread = threading.Thread(
                        target=context.run, args=(self._run,), name=f"app-wake-{n}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                key = self._queue.popleft()
                self._queued.discard(key)
                since = self._since.pop(key, None)
                if_due = key in self._if_due
                self._if_due.discard(key)
                self._running[key] += 1
            token = git.fresh_since.set(since)
            try:
                self._reconcile(key, if_due)
            except Exception:
                # The poll (or the next push) tries again; nothing here is lost.
                log.exception("reconcile of %s failed", key)
            finally:
                git.fresh_since.reset(token)
                with self._ready:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
