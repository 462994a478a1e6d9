"""Incremental compare: what each object's last server-side dry run said, so a compare dry-runs
again only when the desired object or the live one changed since.

A dry run's answer depends on the desired object, the live object it merges into (its
resourceVersion says whether it changed) and on the server itself (schemas, defaults,
admission, the identity's RBAC). The first two are checked on every compare; the last is
caught by a periodic re-validation of each object (`revalidate` seconds, spread by up to a
quarter so that a large Application never re-validates all of its objects at once) and by
an identity change, which forgets the Application's verdicts.

Verdicts also say which Applications track which live object: a watch event on one of them
that changes whether it matches git (or its health) wakes those Applications (self-heal).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from herd_operator.gitops.plan import Key, comparable

# (identity, apiVersion, kind, namespace, name): a live object as one identity sees it.
Watched = tuple[str, str, str, str, str]


def digest(obj: dict[str, Any]) -> bytes:
    return hashlib.blake2b(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), digest_size=16
    ).digest()


def resource_version(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return str((obj.get("metadata") or {}).get("resourceVersion") or "") or None


@dataclass
class Verdict:
    desired: bytes  # digest of the desired object
    live_rv: str | None  # resourceVersion the dry run merged into (None: no live object)
    dry: bytes  # digest of comparable(dry-run result): what the live object must equal
    in_sync: bool
    checked: float  # monotonic time of the dry run
    dry_run: dict[str, Any] | None = None  # kept only while out of sync (for diffs)

    def matches(self, live: dict[str, Any] | None) -> bool:
        """Whether `live` equals what git makes of it, as of this verdict's dry run."""
        return live is not None and digest(comparable(live)) == self.dry


class Memo:
    def __init__(self, revalidate: float) -> None:
        self.revalidate = revalidate
        self._apps: dict[str, tuple[str, dict[Key, Verdict]]] = {}  # app -> (identity, ...)
        self._index: dict[Watched, set[str]] = {}
        self._lock = threading.Lock()
        self._syncing: dict[str, int] = {}  # apps whose sync applies now (nested: counted)

    @contextlib.contextmanager
    def sync_of(self, app: str) -> Iterator[None]:
        """While `app`'s sync applies: its own objects' events are no news (events.wakes)."""
        with self._lock:
            self._syncing[app] = self._syncing.get(app, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._syncing.pop(app) - 1
                if left:
                    self._syncing[app] = left

    def syncing(self, app: str) -> bool:
        return app in self._syncing

    @staticmethod
    def watched(user: str, key: Key) -> Watched:
        return (user, key.api_version, key.kind, key.namespace, key.name)

    def lookup(
        self, app: str, user: str, key: Key, desired: bytes, live: dict[str, Any] | None
    ) -> Verdict | None:
        """The last verdict, if it still holds for this desired and live object."""
        with self._lock:
            entry = self._apps.get(app)
            if entry is None or entry[0] != user:
                return None
            verdict = entry[1].get(key)
        if verdict is None or verdict.desired != desired:
            return None
        if verdict.live_rv != resource_version(live):
            return None
        spread = 1 + desired[0] / 255 / 4
        if time.monotonic() - verdict.checked > self.revalidate * spread:
            return None
        return verdict

    def record(
        self,
        app: str,
        user: str,
        key: Key,
        desired: bytes,
        live: dict[str, Any] | None,
        dry_run: dict[str, Any],
    ) -> Verdict:
        dry = comparable(dry_run)
        in_sync = live is not None and comparable(live) == dry
        verdict = Verdict(
            desired,
            resource_version(live),
            digest(dry),
            in_sync,
            time.monotonic(),
            None if in_sync else dry_run,
        )
        with self._lock:
            entry = self._apps.get(app)
            if entry is None or entry[0] != user:
                self._drop(app)
                entry = self._apps[app] = (user, {})
            entry[1][key] = verdict
            self._index.setdefault(self.watched(user, key), set()).add(app)
        return verdict

    def retain(self, app: str, keys: set[Key]) -> None:
        """Forget verdicts of objects `app` no longer renders."""
        with self._lock:
            entry = self._apps.get(app)
            if entry is None:
                return
            for key in [k for k in entry[1] if k not in keys]:
                del entry[1][key]
                self._unindex(app, self.watched(entry[0], key))

    def forget(self, app: str) -> None:
        with self._lock:
            self._drop(app)

    def watchers(self, watched: Watched) -> list[tuple[str, Verdict]]:
        """The Applications that render this live object, each with its verdict."""
        group = watched[1].rpartition("/")[0]
        key = Key(group, watched[1].rpartition("/")[2], watched[2], watched[3], watched[4])
        with self._lock:
            out = []
            for app in self._index.get(watched, ()):
                entry = self._apps.get(app)
                if entry is not None and key in entry[1]:
                    out.append((app, entry[1][key]))
            return out

    def in_namespace(self, namespace: str) -> set[str]:
        """The Applications with objects in `namespace`."""
        with self._lock:
            return {app for w, apps in self._index.items() if w[3] == namespace for app in apps}

    def size(self) -> int:
        with self._lock:
            return sum(len(v) for _, v in self._apps.values())

    def _drop(self, app: str) -> None:
        entry = self._apps.pop(app, None)
        if entry is not None:
            for key in entry[1]:
                self._unindex(app, self.watched(entry[0], key))

    def _unindex(self, app: str, watched: Watched) -> None:
        apps = self._index.get(watched)
        if apps is not None:
            apps.discard(app)
            if not apps:
                del self._index[watched]
