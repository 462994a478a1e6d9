"""What every reconciler shares: conditions, events, metrics and the error contract.

A reconcile function returns the Ready message or raises:
- InvalidSpec  -> Ready=False/Synced=False reason InvalidSpec, kopf.PermanentError (terminal
  until the spec changes);
- QuotaExceeded (an AWS resource quota reached) -> Ready=False/Synced=False reason
  QuotaExceeded naming the quota, its use and limit and how to raise it, a warning Event;
  terminal as InvalidSpec, and woken once after quota_retry_delay (`later`): slow, as only
  a raised quota or a freed resource changes the outcome;
- Recoverable (throttling, 5xx, network) -> Synced=False reason Recoverable,
  kopf.TemporaryError with exponential backoff, so nothing loops hot;
- Waiting -> Ready=False, looked at again after waiting_delay; Pending -> Ready=False and
  the handler ends: the dependency's own change wakes the object (no poll).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import kopf
from botocore.exceptions import BotoCoreError, ClientError
from kopf._core.actions import invocation  # kopf's own way to run sync code (pinned in uv.lock)
from kubernetes.client.exceptions import ApiException

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import GROUP, VERSION
from herd_core.errors import (
    InvalidSpec,
    Pending,
    QuotaExceeded,
    Recoverable,
    Waiting,
    classify,
)
from herd_operator import metrics
from herd_operator.settings import Settings

Update = tuple[str, bool | None, str, str]  # a condition: type, status, reason, message
T = TypeVar("T")
_kopf_settings: kopf.OperatorSettings | None = None  # kopf's, for its thread pool
log = logging.getLogger("herd.handlers")


def use_kopf_settings(settings: kopf.OperatorSettings) -> None:
    """At start-up: in_thread runs steps on the thread pool these settings size."""
    global _kopf_settings
    _kopf_settings = settings


async def in_thread(fn: Callable[[], T]) -> T:
    """A sync step of an async handler on kopf's own thread pool, as kopf runs a sync handler
    (with its context, so kopf.info posts Events; a cancellation waits for the thread)."""
    return cast(T, await invocation.invoke(fn, settings=_kopf_settings))


def needs_resume(body: kopf.Body, reason: str | None = None, **_: Any) -> bool:
    """Kopf's filter of the resume handlers. An object the operator finds on start that is
    Ready at its generation has nothing to do: a restart over 10,000 Ready Tenants makes no
    call for them, and drift is the sweep's business, not the restart's. A filter, not an
    early return: kopf then neither hands the object to a worker thread nor logs two lines
    for it, which was most of a restart's time over 20,000 objects."""
    status = body.get("status") or {}
    return not (
        reason == kopf.Reason.RESUME
        and status.get("observedGeneration") == body["metadata"].get("generation")
        and cond.is_true(status.get("conditions"), cond.READY)
    )


@dataclass
class Object:
    """The custom object a handler works on, with the writes a handler needs.

    Status writes are merge patches. Outside a `step()` each goes out at once; inside one they
    are gathered and written together when the step ends: one write per step, fields and
    conditions alike. The conditions list is written whole under the resourceVersion it was
    computed from, so a condition another program wrote meanwhile (the worker's) is never
    lost: the write is refused (409), the object read again, the conditions set again. Each
    write answers with the object, so the next one starts from it without a read.
    """

    kind: str
    plural: str
    body: kopf.Body
    _fields: dict[str, Any] = field(default_factory=dict, repr=False)
    _updates: list[Update] = field(default_factory=list, repr=False)
    _open: int = field(default=0, repr=False)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 0)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.body.get("spec") or {})

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    def patch_status(self, **fields: Any) -> None:
        _merge(self._fields, fields)
        if not self._open:
            self.flush()

    def body_patch(self, **fields: Any) -> None:
        """Merge-patch top-level fields outside spec and status (e.g. Argo's `operation`)."""
        from herd_core.constants import GROUP, VERSION

        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, self.name, fields
        )

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        try:
            (kopf.warn if warning else kopf.info)(self.body, reason=reason, message=message)
        except LookupError:  # outside Kopf's handlers (the drift sweep): no posting queue
            kube.post_event(self.body, reason, message, warning)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.body["apiVersion"],
            "kind": self.kind,
            "name": self.name,
            "uid": self.body["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def set_conditions(self, *updates: Update) -> None:
        self._updates.extend(updates)
        if not self._open:
            self.flush()

    @contextmanager
    def step(self) -> Iterator[None]:
        """Gather the status writes of one step into one write at its end (also when it
        fails: what the step made is recorded before its error moves on)."""
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            self.flush()

    def flush(self, attempts: int = 8) -> None:
        fields, updates = self._fields, self._updates
        self._fields, self._updates = {}, []
        if not fields and not updates:
            return
        uid = self.uid
        for _ in range(attempts):
            current = dict(self.body.get("status") or {})
            status = dict(fields)
            version = None
            if updates:
                conditions = list(current.get("conditions") or [])
                for type_, ok, reason, message in updates:
                    conditions = cond.set_condition(
                        conditions, type_, ok, reason, message, self.generation
                    )
                status["conditions"] = conditions
                version = str(self.body["metadata"].get("resourceVersion") or "") or None
            if _contains(current, status):
                return  # nothing would change: no write
            # Only the fields that change: a big Application's resources (thousands, ~300 KB)
            # are not re-sent, re-parsed and re-validated for a new reconciledAt.
            changed = {k: v for k, v in status.items() if current.get(k) != v}
            if "conditions" not in changed:
                version = None  # the precondition guards the conditions list alone
            try:
                raw = kube.patch_status(self.plural, self.namespace, self.name, changed, version)
            except ApiException as err:
                if err.status == 404:
                    return
                if err.status != 409:
                    raise
                again = kube.get_object(self.plural, self.namespace, self.name)
                if again is None or again["metadata"].get("uid") != uid:
                    return  # gone, or another object of that name by now
                self.body = kopf.Body(cast(Any, again))
                continue
            self.body = kopf.Body(cast(Any, raw))
            return
        raise RuntimeError(f"{self.plural}/{self.name}: status kept changing under us")


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch of `patch` onto a pending patch (None stays: it deletes)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _contains(current: Any, patch: Any) -> bool:
    """Whether merge-patching `current` with `patch` would leave it as it is."""
    if isinstance(patch, dict):
        if current is not None and not isinstance(current, dict):
            return False
        have = current or {}
        return all(
            (k not in have) if v is None else _contains(have.get(k), v) for k, v in patch.items()
        )
    return bool(current == patch)


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def exclusive(uid: str) -> Iterator[bool]:
    """One handler at a time per object. Kopf serialises change handlers but runs timers
    beside them, and a sync timer tick cannot be cancelled: without this, a drift check in
    flight could recreate the AWS object the deletion handler just removed. Yields whether
    it waited for another (then what was read before is worth reading again)."""
    with _locks_guard:
        lock = _locks.setdefault(uid, threading.Lock())
    waited = not lock.acquire(blocking=False)
    if waited:
        lock.acquire()
    try:
        yield waited
    finally:
        lock.release()


def fresh(obj: Object) -> Object | None:
    """The object as the API server has it now; None when it is gone or being deleted."""
    raw = kube.get_object(obj.plural, obj.namespace, obj.name)
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        return None
    if raw["metadata"].get("uid") != obj.body["metadata"].get("uid"):
        return None
    return Object(obj.kind, obj.plural, kopf.Body(cast(Any, raw)))


def forget(uid: str) -> None:
    with _locks_guard:
        _locks.pop(uid, None)


def backoff(retry: int, settings: Settings) -> float:
    return float(min(settings.retry_backoff_max, settings.retry_backoff_base * 2**retry))


class Later:
    """Objects stopped by a reached quota, woken once each after a delay: one thread and a
    heap for all of them (a thousand Tenants past the quota are not a thousand timers).

    A kopf TemporaryError would wait as long but then ignore a spec change until its delay
    ran out; a PermanentError ends the handler (the next spec change runs it at once), and
    the wake is an annotation change (QUOTA_RETRY_ANNOTATION), which kopf hands to the same
    handler, with its retries. Only an object still stopped by a quota is woken; one lost to
    a restart is resumed at start (it is not Ready)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str, str, str]] = []
        self._due: dict[str, float] = {}
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, obj: Object, delay: float) -> None:
        due = time.monotonic() + delay
        with self._wakeup:
            if obj.uid in self._due and self._due[obj.uid] <= due:
                return
            self._due[obj.uid] = due
            heapq.heappush(self._heap, (due, obj.uid, obj.plural, obj.namespace, obj.name))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quota-later", daemon=True)
                self._thread.start()
            self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wakeup.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                due, uid, plural, namespace, name = heapq.heappop(self._heap)
                if self._due.get(uid) != due:
                    continue  # superseded by an earlier wake
                del self._due[uid]
            try:
                wake_if_quota_stopped(plural, namespace, name, uid)
            except Exception:
                log.exception("%s/%s: quota retry not woken", plural, name)


QUOTA_RETRY_ANNOTATION = "retry.herd-itt.com/quota"
later = Later()


def wake_if_quota_stopped(plural: str, namespace: str, name: str, uid: str) -> bool:
    """Annotate the object so kopf reconciles it, if it is still stopped by a quota."""
    raw = kube.get_object(plural, namespace, name)
    if raw is None or raw["metadata"].get("uid") != uid or raw["metadata"].get("deletionTimestamp"):
        return False
    ready = cond.get((raw.get("status") or {}).get("conditions"), cond.READY) or {}
    if ready.get("reason") != QuotaExceeded.reason:
        return False
    kube.custom().patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        plural,
        name,
        {"metadata": {"annotations": {QUOTA_RETRY_ANNOTATION: cond.now()}}},
    )
    return True


def reconcile(obj: Object, retry: int, settings: Settings, fn: Callable[[], str]) -> Pending | None:
    """Run `fn` under the error contract and record the outcome in status, events, metrics;
    the Pending it ended on, if any (recorded like the rest: the caller may wait for it).

    One status write for what `fn` leaves unwritten and the outcome together: `fn` writes at
    once (obj.flush) only what must be recorded before its next side effect, and per step."""
    with obj.step():
        return _reconcile(obj, retry, settings, fn)


def _reconcile(
    obj: Object, retry: int, settings: Settings, fn: Callable[[], str]
) -> Pending | None:
    started = time.perf_counter()
    try:
        try:
            message = fn()
        except (ClientError, BotoCoreError) as err:
            raise classify(err) from err
    except InvalidSpec as err:
        metrics.RECONCILES.labels(obj.kind, "invalid").inc()
        reason = getattr(err, "reason", cond.INVALID_SPEC)
        quota = isinstance(err, QuotaExceeded)
        metrics.ERRORS.labels(obj.kind, reason if quota else cond.INVALID_SPEC).inc()
        obj.set_conditions(
            (cond.READY, False, reason, str(err)), (cond.SYNCED, False, reason, str(err))
        )
        obj.event(reason, str(err), warning=True)
        if quota:
            later.add(obj, settings.quota_retry_delay)
        if not err.terminal:
            raise kopf.TemporaryError(str(err), delay=backoff(retry, settings)) from err
        raise kopf.PermanentError(str(err)) from err
    except Waiting as err:
        metrics.RECONCILES.labels(obj.kind, "waiting").inc()
        obj.set_conditions((cond.READY, False, "Waiting", str(err)))
        raise kopf.TemporaryError(str(err), delay=settings.waiting_delay) from err
    except Pending as err:
        metrics.RECONCILES.labels(obj.kind, "waiting").inc()
        obj.set_conditions((cond.READY, False, "Waiting", str(err)))
        return err
    except Recoverable as err:
        metrics.RECONCILES.labels(obj.kind, "retry").inc()
        metrics.ERRORS.labels(obj.kind, cond.RECOVERABLE).inc()
        delay = backoff(retry, settings)
        obj.set_conditions(
            (cond.SYNCED, False, cond.RECOVERABLE, f"{err}; retrying in {delay:.0f}s")
        )
        obj.event(cond.RECOVERABLE, f"{err}; retrying in {delay:.0f}s", warning=True)
        raise kopf.TemporaryError(str(err), delay=delay) from err
    finally:
        metrics.DURATION.labels(obj.kind).observe(time.perf_counter() - started)
    metrics.RECONCILES.labels(obj.kind, "success").inc()
    obj.set_conditions(
        (cond.READY, True, cond.AVAILABLE, message),
        (cond.SYNCED, True, cond.RECONCILE_SUCCESS, "in sync with the spec"),
    )
    obj.patch_status(observedGeneration=obj.generation, lastSyncedTime=cond.now())
    return None


def guard(obj: Object, retry: int, settings: Settings, fn: Callable[[], None]) -> None:
    """The error contract without the Ready bookkeeping (deletion, drift timers)."""
    try:
        try:
            fn()
        except (ClientError, BotoCoreError) as err:
            raise classify(err) from err
    except InvalidSpec as err:
        obj.event(getattr(err, "reason", cond.INVALID_SPEC), str(err), warning=True)
        if not err.terminal:
            raise kopf.TemporaryError(str(err), delay=backoff(retry, settings)) from err
        raise kopf.PermanentError(str(err)) from err
    except Recoverable as err:
        metrics.ERRORS.labels(obj.kind, cond.RECOVERABLE).inc()
        delay = backoff(retry, settings)
        obj.event(cond.RECOVERABLE, f"{err}; retrying in {delay:.0f}s", warning=True)
        raise kopf.TemporaryError(str(err), delay=delay) from err


def guard_delete(obj: Object, retry: int, settings: Settings, fn: Callable[[], None]) -> None:
    """Deletion: whatever fails, the finalizer stays until the AWS/OpenRemote object is gone.

    Kopf lets the finalizer go when a deletion handler fails permanently, which would orphan
    the object outside Kubernetes; so every failure is retried with backoff, and the Ready
    condition says what blocks the deletion.
    """
    try:
        try:
            fn()
        except (ClientError, BotoCoreError) as err:
            raise classify(err) from err
    except Exception as err:
        delay = backoff(retry, settings)
        message = f"deletion blocked: {err}; retrying in {delay:.0f}s"
        metrics.ERRORS.labels(obj.kind, cond.DELETION_BLOCKED).inc()
        with suppress(Exception):
            obj.set_conditions((cond.READY, False, cond.DELETION_BLOCKED, message))
        obj.event(cond.DELETION_BLOCKED, message, warning=True)
        raise kopf.TemporaryError(message, delay=delay) from err
