"""Drift checks as one sweep per kind, not one timer per object.

A Kopf timer per object keeps a task and its state alive for every SESTemplate and
CognitoClient: 10,000 Tenants meant 10,000 timers firing on their own. Here one thread walks
each kind with a paginated list (pages of `PAGE`), at most `drift_max_rate` objects a second
so that AWS sees a bounded read rate, and starts the next pass `drift_interval` seconds after
the last one ended. Each object gets what its timer did: read afresh and checked under the
same per-object lock as its handlers, Ready objects at their generation only.

With peering only the working replica sweeps: the one no live peer outranks (Kopf's rule,
read from the same ClusterKopfPeering). The same thread reads the AWS quota gauges
(quotas.py) after a pass, at most every quota_refresh_interval.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import GROUP, VERSION
from herd_operator import memory, quotas
from herd_operator.handlers.common import Object, exclusive, fresh
from herd_operator.settings import Settings

PAGE = 500
TRIM = 30.0  # seconds between hand-backs of free memory
log = logging.getLogger("herd.drift")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    repair: Callable[[Object], None]  # raises what the error contract says; logged here


def due(item: dict[str, Any]) -> bool:
    """Ready at its generation and not being deleted: the regular handlers own the rest."""
    meta, status = item["metadata"], item.get("status") or {}
    return (
        not meta.get("deletionTimestamp")
        and status.get("observedGeneration") == meta.get("generation")
        and cond.is_true(status.get("conditions"), cond.READY)
    )


def listed(plural: str, namespaces: list[str]) -> Iterator[dict[str, Any]]:
    """Every object of `plural`, a page at a time."""
    api = kube.custom()
    scopes: list[str | None] = list(namespaces) or [None]
    for namespace in scopes:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE}
            if token:
                kwargs["_continue"] = token
            try:
                if namespace is None:
                    page = api.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
                else:
                    page = api.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, **kwargs
                    )
            except ApiException as err:
                # A sweep at drift_max_rate outlives its continue token: 10,000 objects at
                # 100/s take 100 s, and the API server compacts etcd every 5 minutes. The
                # 410 names a token for the rest of the list, as it is now (a sweep needs no
                # snapshot); without one, the error stands.
                token = _fresh_continue(err) if token else None
                if not token:
                    raise
                log.info("%s: a page expired; the sweep goes on with the list as it is now", plural)
                continue
            page = cast(dict[str, Any], page)
            yield from page["items"]
            token = page["metadata"].get("continue")
            if not token:
                break


def _fresh_continue(err: ApiException) -> str | None:
    """The continue token a 410 Gone (an expired one) offers for the rest of the list."""
    if err.status != 410:
        return None
    try:
        return json.loads(err.body or "{}").get("metadata", {}).get("continue") or None
    except (ValueError, AttributeError):
        return None


def outranked(peering: dict[str, Any], priority: int, now: dt.datetime) -> bool:
    """Whether a live peer has a higher priority than ours (ours is unique: peering_priority)."""
    for info in (peering.get("status") or {}).values():
        if not isinstance(info, dict) or "lastseen" not in info:
            continue
        seen = dt.datetime.fromisoformat(str(info["lastseen"]))
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=dt.UTC)
        alive = seen + dt.timedelta(seconds=int(info.get("lifetime", 60))) > now
        if alive and int(info.get("priority", 0)) > priority:
            return True
    return False


class Sweeper:
    def __init__(self, settings: Settings, kinds: list[Kind], priority: int) -> None:
        self.settings = settings
        self.kinds = kinds
        self.priority = priority
        self.stop = threading.Event()
        self.passes = 0
        self._quotas_at: float | None = None

    def active(self) -> bool:
        if self.settings.peering is None:
            return True
        try:
            peering = kube.custom().get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", self.settings.peering
            )
        except ApiException as err:
            log.warning("cannot read peering %s: %s", self.settings.peering, err.reason)
            return False
        return not outranked(cast(dict[str, Any], peering), self.priority, dt.datetime.now(dt.UTC))

    def sweep(self) -> int:
        """One pass over every kind; the number of objects checked."""
        checked = 0
        gap = 1.0 / self.settings.drift_max_rate
        for kind in self.kinds:
            for item in listed(kind.plural, self.settings.watch_namespaces):
                if self.stop.is_set() or not self.active_cached():
                    return checked
                if not due(item):
                    continue
                started = time.monotonic()
                self.check(kind, item)
                checked += 1
                self.stop.wait(max(0.0, gap - (time.monotonic() - started)))
        return checked

    def check(self, kind: Kind, item: dict[str, Any]) -> None:
        body = kopf.Body(cast(Any, item))
        uid = str(item["metadata"]["uid"])
        try:
            with exclusive(uid):
                obj = fresh(Object(kind.kind, kind.plural, body))
                if obj is not None and due(dict(obj.body)):
                    kind.repair(obj)
        except (kopf.TemporaryError, kopf.PermanentError) as err:
            log.info("%s %s: drift check: %s", kind.kind, item["metadata"]["name"], err)
        except ApiException as err:  # e.g. its namespace is being deleted
            name = item["metadata"]["name"]
            log.info("%s %s: drift check: %s %s", kind.kind, name, err.status, err.reason)
        except Exception:
            log.exception("%s %s: drift check failed", kind.kind, item["metadata"]["name"])

    _active_at = 0.0
    _active = True

    def active_cached(self) -> bool:
        """Peering read at most every few seconds during a pass."""
        if time.monotonic() - self._active_at > 5:
            self._active, self._active_at = self.active(), time.monotonic()
        return self._active

    def run(self) -> None:
        interval = self.settings.drift_interval
        due_at = time.monotonic() + interval
        # Wakes at least every TRIM seconds to hand free memory back (memory.py).
        while not self.stop.wait(max(0.0, min(TRIM, due_at - time.monotonic()))):
            memory.trim()
            if time.monotonic() < due_at:
                continue
            try:
                self._active_at = 0.0
                if self.active_cached():
                    began = time.monotonic()
                    checked = self.sweep()
                    self.passes += 1
                    log.info(
                        "drift pass %d: %d objects checked in %.0f s",
                        self.passes,
                        checked,
                        time.monotonic() - began,
                    )
                    memory.trim()
                    self.refresh_quotas()
            except Exception:
                log.exception("drift sweep failed; next pass in %ss", interval)
            due_at = time.monotonic() + interval

    def refresh_quotas(self) -> None:
        """The quota gauges, after the first pass and then at most every interval."""
        now = time.monotonic()
        if self._quotas_at is None or now - self._quotas_at >= self.settings.quota_refresh_interval:
            self._quotas_at = now
            quotas.refresh(self.settings)

    def start(self) -> threading.Thread:
        """Call from a Kopf handler: the thread runs in a copy of its context, where Kopf
        keeps what posting Events needs (as its own handler threads do)."""
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(self.run,), name="drift-sweep", daemon=True
        )
        thread.start()
        return thread
