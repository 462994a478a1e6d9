"""Applications shared out between the operator's replicas (docs/sharding.md).

Membership is a Lease per replica (coordination.k8s.io) in the operator's namespace, renewed
every `renew` seconds; a replica is live while its Lease is unexpired. Each Application is
owned by one live replica: the highest of hash(replica, namespace/name) over the live
members (rendezvous hashing), so a joining replica takes about 1/n of the apps from the
others and a leaving one's apps spread over the rest; nothing else moves.

No two replicas work on one app at once:
- self-fencing: a replica whose own Lease was last renewed (the request sent) more than
  `duration - renew` ago stops starting work, before the Lease can expire and another take
  its apps;
- a replica's apps move to others only when its Lease expired (it fenced itself first) or it
  said goodbye (deleted its Lease once its work in flight ended);
- a joining replica takes apps from live replicas: it starts on them `duration` after it
  joined, once every member has listed the Leases (every `renew` s at most) and stopped
  starting work on them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import kopf
from kubernetes import client
from prometheus_client import Counter, Gauge

from herd_core.constants import GROUP
from herd_operator.diffbase import DigestDiffBaseStorage

log = logging.getLogger(__name__)
LABEL = f"{GROUP}/shard-member"  # on every member's Lease: what the membership lists
STALE = 10  # a Lease expired for this many durations is a dead replica's: removed
# By app (namespace/name), on each replica: which replica works on which app, and how often.
RECONCILES = Counter(
    "herd_application_reconciles", "Reconciles of an Application by this replica", ["app"]
)
SYNCS = Counter("herd_application_syncs", "Syncs (applies) of an Application here", ["app"])
MEMBERS = Gauge("herd_shard_members", "Live replicas as this one sees them")
WORKING = Gauge("herd_shard_working", "1 while this replica works on the apps it owns")
OWNED = Gauge("herd_shard_applications", "Applications this replica owns")


def forget(app: str) -> None:
    """A deleted app's series go with it (the label set grows with the apps, not forever)."""
    for metric in (RECONCILES, SYNCS):
        with suppress(KeyError):
            metric.remove(app)


class Fenced(Exception):
    """The app moved to another replica (or this one fenced itself) before its sync."""


def default_identity() -> str:
    """The pod's name and a per-process suffix: a restarted container is a new member (its
    old Lease runs out as a dead one's)."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host[:50].lower()}-{secrets.token_hex(3)}"


def score(member: str, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{member}\0{key}".encode()).digest()[:8], "big")


def owner(key: str, members: list[str]) -> str | None:
    """Rendezvous (highest random weight) hashing of `key` over `members`."""
    return max(members, key=lambda m: (score(m, key), m)) if members else None


class Membership:
    """This replica's Lease and its view of the live members, kept by one thread."""

    def __init__(
        self,
        namespace: str,
        identity: str,
        duration: float,
        renew: float,
        on_change: Callable[[], None] = lambda: None,
        api: Callable[[], client.CoordinationV1Api] = client.CoordinationV1Api,
    ) -> None:
        self.namespace, self.identity = namespace, identity
        self.duration, self.renew = duration, renew
        self._on_change = on_change
        self._api = api
        self._lock = threading.Condition()
        self._members: list[str] = []  # sorted, this replica included while it is working
        self._fence_at = 0.0  # monotonic: past it, this replica starts no work
        self._settled_at = float("inf")  # monotonic: from it, apps taken from live members
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._created = False
        self._settled = False

    # -- what the handlers ask ---------------------------------------------------------------
    def working(self) -> bool:
        return not self._stopping and time.monotonic() < self._fence_at

    def members(self) -> list[str]:
        with self._lock:
            return list(self._members)

    def mine(self, key: str) -> bool:
        """Whether this replica owns `key` and may work on it now."""
        if not self.working() or time.monotonic() < self._settled_at:
            return False
        with self._lock:
            return owner(key, self._members) == self.identity

    @contextmanager
    def work(self, key: str) -> Iterator[bool]:
        """Yields whether to work on `key`; the work counts as in flight until it ends (a
        goodbye waits for it)."""
        with self._lock:
            self._in_flight += 1
        try:
            yield self.mine(key)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shard-membership", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Goodbye: stop starting work, wait (at most `timeout`) for the work in flight,
        then delete the Lease so that the others take the apps at once."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            ended = self._lock.wait_for(lambda: self._in_flight == 0, timeout)
        if not ended:
            return  # the Lease runs out instead: by then this process is gone
        try:
            self._api().delete_namespaced_lease(self._name, self.namespace, **self._timeout)
        except client.ApiException as err:
            if err.status != 404:
                log.warning("deleting lease %s: %s", self._name, err)

    @property
    def _timeout(self) -> dict[str, Any]:
        # A call that hangs (a dropped connection) would stop the renewals for good: the
        # replica would fence itself and never come back.
        return {"_request_timeout": self.renew}

    @property
    def _name(self) -> str:
        return f"herd-shard-{self.identity}"[:63].rstrip("-.")

    def _run(self) -> None:
        while not self._stopping:
            wait = self.renew
            try:
                wait = self.tick()
            except Exception:
                log.exception("shard membership")
                wait = min(1.0, self.renew)
            with self._lock:
                self._lock.wait_for(lambda: self._stopping, max(wait, 0.05))

    def tick(self) -> float:
        """Renew, list, recompute; the seconds until the next tick is due."""
        sent = time.monotonic()
        rejoined = not self.working()
        try:
            self._renew_lease()
        except Exception:
            log.exception("renewing lease %s", self._name)
        else:
            self._fence_at = sent + self.duration - self.renew
        try:
            leases = (
                self._api()
                .list_namespaced_lease(self.namespace, label_selector=LABEL, **self._timeout)
                .items
            )
        except Exception:
            # The others as last seen; this replica drops out of them once it is fenced.
            log.exception("listing shard leases")
            leases = None
        now = dt.datetime.now(dt.UTC)
        live: list[str] = []
        next_expiry = self.renew
        if leases is None:
            live = [m for m in self._members if m != self.identity]
            next_expiry = min(1.0, self.renew)
        for lease in leases or []:
            spec = lease.spec
            holder = spec.holder_identity if spec else None
            renewed = spec.renew_time if spec else None
            if spec is None or not holder or renewed is None or holder == self.identity:
                continue
            left = (renewed - now).total_seconds() + float(spec.lease_duration_seconds or 0)
            if left > 0:
                live.append(holder)
                next_expiry = min(next_expiry, left + 0.05)
            elif -left > STALE * self.duration:
                self._delete_stale(str(lease.metadata.name))  # type: ignore[union-attr]
        working = self.working()
        if working:
            live.append(self.identity)
        members = sorted(live)
        with self._lock:
            changed = members != self._members
            self._members = members
            if working and rejoined:
                # Alone: nothing to take from anyone. Else the others stop first.
                alone = members == [self.identity]
                self._settled_at = sent if alone else sent + self.duration
                log.info(
                    "shard member %s joined (%d live); works from %s",
                    self.identity,
                    len(members),
                    "now" if alone else f"in {self.duration:.0f} s",
                )
        settle = self._settled_at - time.monotonic()
        settled = working and settle <= 0
        if changed or settled != self._settled:
            # Who owns what changed: the replica adopts what it gained, forgets what it lost.
            self._settled = settled
            MEMBERS.set(len(members))
            WORKING.set(1 if settled else 0)
            log.info("shard members: %s", ", ".join(members) or "none")
            self._on_change()
        if 0 < settle < next_expiry:
            next_expiry = settle + 0.05
        return max(0.05, min(self.renew - (time.monotonic() - sent), next_expiry))

    def _renew_lease(self) -> None:
        now = dt.datetime.now(dt.UTC)
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self._name, labels={LABEL: "true"}),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                # Rounded up: the Lease may outlast the fence, never the other way round.
                lease_duration_seconds=math.ceil(self.duration),
                renew_time=now,
            ),
        )
        api = self._api()
        if self._created:
            api.patch_namespaced_lease(
                self._name, self.namespace, {"spec": {"renewTime": _micro(now)}}, **self._timeout
            )
            return
        body.spec.acquire_time = now  # type: ignore[union-attr]
        try:
            api.create_namespaced_lease(self.namespace, body, **self._timeout)
        except client.ApiException as err:
            if err.status != 409:
                raise
            api.replace_namespaced_lease(self._name, self.namespace, body, **self._timeout)
        self._created = True

    def _delete_stale(self, name: str) -> None:
        try:
            self._api().delete_namespaced_lease(name, self.namespace, **self._timeout)
        except client.ApiException as err:
            if err.status != 404:
                log.warning("deleting stale lease %s: %s", name, err)


def _micro(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MemoryDiffBase(DigestDiffBaseStorage):
    """Kopf's diff base of sharded Applications, in this replica's memory, not in an
    annotation: a replica skips the apps it does not own, and kopf then stores the new diff
    base; shared in the object, that write could hide a change from the owner (kopf takes only
    the latest of a burst of events). Each replica keeps its own; after a start every app
    is new to it, and its owner compares it (a no-op when it is in sync)."""

    def __init__(self) -> None:
        super().__init__(prefix=GROUP, key="last-handled-configuration")
        self._seen: dict[str, Any] = {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return self._seen.get(body.get("metadata", {}).get("uid", ""))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        self._seen[body.get("metadata", {}).get("uid", "")] = essence

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
