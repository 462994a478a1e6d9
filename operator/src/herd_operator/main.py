"""Every kopf handler of the operator, in one place; the work lives in handlers/<kind>.py.

Run with `herd operator run`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import kopf
from kopf._core.actions import invocation  # kopf's own way to run sync code (pinned in uv.lock)
from kubernetes import client

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import FINALIZER, GROUP, VERSION, WAKE_ANNOTATION
from herd_core.errors import Pending
from herd_operator import drift, kubesession, metrics, slimwatch
from herd_operator.diffbase import DigestDiffBaseStorage
from herd_operator.gitops import webhook
from herd_operator.gitops.cache import LiveCache
from herd_operator.gitops.engine import Engine
from herd_operator.gitops.events import NAMESPACES, Debouncer, Watcher
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.incremental import Memo
from herd_operator.gitops.render import Limits
from herd_operator.handlers import application, cognitoclient, sestemplate, tenant
from herd_operator.handlers.common import (
    Object,
    exclusive,
    forget,
    fresh,
    guard,
    guard_delete,
    reconcile,
)
from herd_operator.settings import get_settings

S = get_settings()
T = TypeVar("T")


_STARTED = time.time()
_sweeper: drift.Sweeper | None = None
_kopf_settings: kopf.OperatorSettings | None = None  # kopf's, for its thread pool


def peering_priority() -> int:
    """The configured priority, or one that falls with the start time (ms) with random low
    digits, so two replicas started in the same millisecond still differ."""
    if S.peering_priority is not None:
        return S.peering_priority
    return (10**13 - int(_STARTED * 1000)) * 1000 + random.randrange(1000)


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    return await kubesession.login(S.kube_connections, S.watch_namespaces, **kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Finalizer and progress bookkeeping under our own group, not kopf.zalando.org.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # Long strings (an SESTemplate's html) as digests: annotations hold 256 KiB in all.
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Explicit timeouts: without them a silently dropped watch hangs forever (kopf #698).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 30
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 32
    # A burst of 1,000 Tenants at once made 1,000 handlers' worth of short-lived objects
    # together, and the allocators kept that peak (RSS 260 MiB, of it 108 MiB free inside
    # pymalloc arenas); 200 at a time: 190 MiB, as fast, as the API server is the limit.
    # Safe only without kopf indices (see _tenants_seen). A worker keeps its place while it
    # waits for more events of its object: 0.2 s, not Kopf's 5, or a restart over 10,000
    # objects, 200 at a time, would take 250 s just to pass over them.
    settings.queueing.worker_limit = S.objects_in_flight
    settings.queueing.idle_timeout = 0.2
    # At a start kopf queues every listed body: list them a page at a time (not the whole
    # kind in one answer), and without managedFields.
    settings.watching.chunk_size = 500
    slimwatch.install()
    # After its own patch, kopf holds an object's older events until the patched version
    # arrives, for at most this long. Under a burst of Tenants the watch runs more than the
    # default 5 s behind: kopf then took a stale event (without its diff base) for a new
    # object and ran the create handler a second time.
    settings.persistence.consistency_timeout = 60
    # Peering: exactly one working replica. Kopf pauses every replica of equal priority, so
    # replicas of one Deployment must differ: the longest-running one leads, a new one waits
    # (a rolling update hands over when the old one says goodbye; a killed one is replaced
    # when its record's lifetime runs out).
    settings.peering.priority = peering_priority()
    settings.peering.lifetime = S.peering_lifetime
    # A deleted Application waits for its poll timer to exit; check every second, not 60.
    settings.background.cancellation_polling = 1
    global _kopf_settings
    _kopf_settings = settings
    kube.load_config(S)
    metrics.serve(S.metrics_port, S.listen_host)
    if S.webhook_port:
        if not S.webhook_secret:
            raise kopf.PermanentError("HERD_WEBHOOK_PORT is set but HERD_WEBHOOK_SECRET is not")
        await webhook.serve(S.listen_host, S.webhook_port, S.webhook_secret, refresh_applications)
    global _sweeper
    if _sweeper is None:
        kinds = [
            drift.Kind(sestemplate.KIND, sestemplate.PLURAL, sestemplate_repair),
            drift.Kind(cognitoclient.KIND, cognitoclient.PLURAL, cognitoclient_repair),
        ]
        _sweeper = drift.Sweeper(S, kinds, settings.peering.priority)
        _sweeper.start()
    logging.getLogger(__name__).info("herd operator ready (environment %s)", S.environment)


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


# -- SESTemplate --------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, sestemplate.PLURAL, when=needs_resume)
@kopf.on.create(GROUP, VERSION, sestemplate.PLURAL)
@kopf.on.update(GROUP, VERSION, sestemplate.PLURAL)
def sestemplate_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(sestemplate.KIND, sestemplate.PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, S, lambda: sestemplate.reconcile(obj, S))


def sestemplate_repair(obj: Object) -> None:
    """Drift, from the sweep (drift.py), under the object's lock and read afresh."""
    guard(obj, 0, S, lambda: sestemplate.repair_drift(obj, S))


@kopf.on.delete(GROUP, VERSION, sestemplate.PLURAL)
def sestemplate_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(sestemplate.KIND, sestemplate.PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, S, lambda: sestemplate.delete(obj, S))
    forget(obj.uid)


# -- CognitoClient ------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, cognitoclient.PLURAL, when=needs_resume)
@kopf.on.create(GROUP, VERSION, cognitoclient.PLURAL)
@kopf.on.update(GROUP, VERSION, cognitoclient.PLURAL)
def cognitoclient_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(cognitoclient.KIND, cognitoclient.PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, S, lambda: cognitoclient.reconcile(obj, S))


def cognitoclient_repair(obj: Object) -> None:
    """Drift, from the sweep (drift.py), under the object's lock and read afresh."""
    gone = False

    def repair() -> None:
        nonlocal gone
        gone = cognitoclient.repair_drift(obj, S)

    guard(obj, 0, S, repair)
    if gone:
        obj.event(
            "DriftRepaired", "app client was deleted outside Herd; creating it again", warning=True
        )
        reconcile(obj, 0, S, lambda: cognitoclient.reconcile(obj, S))


@kopf.on.delete(GROUP, VERSION, cognitoclient.PLURAL)
def cognitoclient_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(cognitoclient.KIND, cognitoclient.PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, S, lambda: cognitoclient.delete(obj, S))
    forget(obj.uid)


@dataclass
class ChildWait:
    """A Tenant's handler, which takes its CognitoClient's new states while it runs."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    step: tuple[str, ...] | None = None  # the child's, as its latest event has it
    body: kopf.Body | None = None  # that event's child


# By Tenant uid. Only this process's handlers wait, so only its own events concern them.
_child_waits: dict[str, ChildWait] = {}


@kopf.on.resume(GROUP, VERSION, tenant.PLURAL, when=needs_resume)
@kopf.on.create(GROUP, VERSION, tenant.PLURAL)
@kopf.on.update(GROUP, VERSION, tenant.PLURAL)
async def tenant_reconcile(body: kopf.Body, retry: int, reason: str, **_: Any) -> None:
    """The pass that creates a Tenant's CognitoClient waits here for the child's first state,
    handed over by the child's own event (tenant_child_seen), then runs again: not ended
    Pending and woken by an annotation (two more writes to the Tenant and a handler run
    queued behind every Tenant not yet started). The wait is bounded (HERD_CHILD_WAIT);
    past it, and for any other pass, the child's change wakes the Tenant by annotation."""
    uid = str(body["metadata"]["uid"])
    # From before the pass that creates the child: its first state may come before it ends.
    wait = _child_waits[uid] = ChildWait()
    try:
        ran = await _in_thread(lambda: _tenant_first_pass(body, retry, reason))
        if ran is None:
            return
        current, pending = ran
        if (
            isinstance(pending, tenant.ChildPending)
            and pending.created
            and await _child_moved(wait, pending.step, S.child_wait)
        ):
            again = await _in_thread(lambda: _tenant_pass_again(current, retry))
            if again is None:
                return
            current = again
    finally:
        if _child_waits.get(uid) is wait:
            del _child_waits[uid]
    # A state the child reached while a pass ran, or that no pass waited for, is not lost:
    # from here on the child's events wake the Tenant, and so does this one, if it must.
    _remember_tenant(current.body)
    wake = None if wait.body is None else child_wake("MODIFIED", wait.body)
    if wake is not None:
        await _in_thread(lambda: _wake(*wake))


async def _in_thread(fn: Callable[[], T]) -> T:
    """A sync step of an async handler on kopf's own thread pool, as kopf runs a sync handler
    (with its context, so kopf.info posts Events; a cancellation waits for the thread)."""
    return cast(T, await invocation.invoke(fn, settings=_kopf_settings))


async def _child_moved(wait: ChildWait, recorded: tuple[str, ...], timeout: float) -> bool:
    """Whether the child's state moves on from `recorded` within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wait.step is None or wait.step == recorded:
        wait.changed.clear()
        try:
            await asyncio.wait_for(wait.changed.wait(), deadline - loop.time())
        except TimeoutError:
            return False
    return True


def _tenant_first_pass(
    body: kopf.Body, retry: int, reason: str
) -> tuple[Object, Pending | None] | None:
    with exclusive(body["metadata"]["uid"]):
        # As the API server has it now: the child's handler may have moved it on meanwhile.
        # A first pass of a new Tenant needs no read: nothing but the signup has written it.
        given = Object(tenant.KIND, tenant.PLURAL, body)
        first = reason == kopf.Reason.CREATE and retry == 0 and not body.get("status")
        found = given if first else fresh(given)
        if found is None:
            return None
        return found, _tenant_pass(found, retry)


def _tenant_pass_again(given: Object, retry: int) -> Object | None:
    with exclusive(given.uid):
        # Read again: the spec may have changed during the wait, or the Tenant be going.
        found = fresh(given)
        if found is not None:
            _tenant_pass(found, retry)
        return found


def _tenant_pass(current: Object, retry: int) -> Pending | None:
    """One pass of the Tenant's reconcile (under its lock)."""
    try:
        return reconcile(current, retry, S, lambda: tenant.reconcile(current, S))
    except kopf.PermanentError:
        current.patch_status(phase="Failed")
        raise


# What a child's wake needs to know of each Tenant, by (namespace, name), kept from the Tenant
# watch kopf runs anyway: no read of the Tenant per child event. Our own map, not a kopf
# index: kopf holds every handler back until an index has seen every object, which with a
# worker limit (fewer places than objects) would never happen.
Seen = tuple[str, tuple[str, ...], str | None, bool]  # uid, child's step, wake stamp, deleting
_tenants_seen: dict[tuple[str, str], Seen] = {}


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    return (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))


def _seen(body: Mapping[str, Any]) -> Seen:
    meta = body["metadata"]
    step = cond.get((body.get("status") or {}).get("conditions"), tenant.CLIENT) or {}
    return (
        str(meta.get("uid")),
        tenant.client_step(step, of_tenant=True),
        (meta.get("annotations") or {}).get(WAKE_ANNOTATION),
        bool(meta.get("deletionTimestamp")),
    )


# Only the events that change what the map holds (3 of a new Tenant's ~5): kopf then runs and
# logs nothing for the rest.
@kopf.on.event(
    GROUP,
    VERSION,
    tenant.PLURAL,
    when=lambda type, body, **_: type == "DELETED" or _tenants_seen.get(_key(body)) != _seen(body),
)
async def tenant_seen(type: str, body: kopf.Body, **_: Any) -> None:
    key = _key(body)
    if type == "DELETED":
        seen = _tenants_seen.get(key)
        if seen is not None and seen[0] == str(body["metadata"].get("uid")):  # not a namesake's
            del _tenants_seen[key]
        return
    _tenants_seen[key] = _seen(body)


def _remember_tenant(body: Mapping[str, Any]) -> None:
    """The Tenant as its handler's own last write left it (its watch events wait while its
    handler runs, and the child's may come first)."""
    _tenants_seen[_key(body)] = _seen(body)


def child_wake(type: str, body: kopf.Body) -> tuple[str, str, str] | None:
    """The wake a Tenant's CognitoClient event calls for, as (namespace, Tenant, stamp), or
    None. The Tenant's side comes from _tenants_seen (at worst a moment old: then one wake
    too many, which finds nothing to do; not there yet at a start-up: the Tenant's own
    resume reads its child)."""
    if type == "DELETED":
        return None
    ready = cond.get((body.get("status") or {}).get("conditions"), cond.READY) or {}
    if not ready:
        return None  # not reconciled yet: nothing the Tenant, which made it, does not know
    owner = _tenant_of(body)
    if owner is None or owner["uid"] in _child_waits:
        return None  # not a Tenant's, or its handler waits for this very change, in place
    namespace = body["metadata"]["namespace"]
    seen = _tenants_seen.get((namespace, owner["name"]))
    if seen is None or seen[0] != owner["uid"]:
        return None
    _uid, step, stamp, deleting = seen
    if deleting or tenant.client_step(ready) == step:
        return None  # the Tenant has seen this state of its child already
    # The stamp names the child's state (its Ready transition), not its resourceVersion: the
    # child's later writes in that state (kopf's own annotations, a lastSyncedTime) then
    # wake the Tenant no second time while _tenants_seen has not yet caught up with the wake.
    wake = (
        "client-"
        + hashlib.sha256(
            "/".join(
                str(x)
                for x in (
                    body["metadata"].get("uid"),
                    ready.get("status"),
                    ready.get("reason"),
                    ready.get("lastTransitionTime"),
                )
            ).encode()
        ).hexdigest()[:16]
    )
    return None if stamp == wake else (namespace, owner["name"], wake)


def logo_wake(type: str, body: kopf.Body) -> str | None:
    """The wake a Tenant's event calls for when its status has a logo the realm does not show
    yet: a stamp of the logo's URL, so one logo wakes it once."""
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return None
    url = tenant.logo_to_apply(body.get("status") or {}, S)
    if url is None:
        return None
    stamp = f"logo-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
    return (
        None if (body["metadata"].get("annotations") or {}).get(WAKE_ANNOTATION) == stamp else stamp
    )


# The two wakes below decide in their `when` filters, in kopf's event loop: the events that
# call for nothing (nearly all, and every one of a restart's listing) then take no worker
# thread and log no line.
@kopf.on.event(
    GROUP,
    VERSION,
    cognitoclient.PLURAL,
    labels={tenant.TENANT_LABEL: kopf.PRESENT},
    when=lambda type, body, **_: child_wake(type, body) is not None,
)
def tenant_child_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """A Tenant's CognitoClient changed state (Ready, or why not): wake the Tenant, whose
    handler ended Pending rather than polling its child. The wake is an annotation change,
    so kopf's own handler (with its retries) runs the Tenant. A restart resumes every Tenant
    not Ready and the watch replays every child, so no wake is lost. A watch event, not a
    change handler: the child's own diff base stays as it is."""
    wake = child_wake(type, body)
    if wake is not None:
        namespace, name, stamp = wake
        _wake(namespace, name, stamp)


def _tenant_of(child: kopf.Body) -> Mapping[str, Any] | None:
    """The owner reference of a CognitoClient's Tenant, if a Tenant made it."""
    refs = child["metadata"].get("ownerReferences") or []
    return next((o for o in refs if o.get("kind") == tenant.KIND), None)


def handover(type: str, body: kopf.Body) -> tuple[ChildWait, tuple[str, ...]] | None:
    """A new state of this child for its Tenant's handler waiting in place, if one waits."""
    if type == "DELETED":
        return None
    owner = _tenant_of(body)
    wait = None if owner is None else _child_waits.get(str(owner["uid"]))
    ready = cond.get((body.get("status") or {}).get("conditions"), cond.READY)
    if wait is None or ready is None:
        return None
    step = tenant.client_step(ready)
    return None if step == wait.step else (wait, step)


@kopf.on.event(
    GROUP,
    VERSION,
    cognitoclient.PLURAL,
    labels={tenant.TENANT_LABEL: kopf.PRESENT},
    when=lambda type, body, **_: handover(type, body) is not None,
)
async def tenant_child_seen(type: str, body: kopf.Body, **_: Any) -> None:
    """Hand the child's new state to its Tenant's handler waiting in place (tenant_reconcile)."""
    found = handover(type, body)
    if found is not None:
        wait, step = found
        wait.step, wait.body = step, body
        wait.changed.set()


@kopf.on.event(
    GROUP, VERSION, tenant.PLURAL, when=lambda type, body, **_: logo_wake(type, body) is not None
)
def tenant_logo_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """The thumbnail worker wrote a new status.logo: wake the Tenant so its handler gives the
    realm the logo (a status change runs no handler)."""
    stamp = logo_wake(type, body)
    if stamp is not None:
        _wake(body["metadata"]["namespace"], body["metadata"]["name"], stamp)


def _wake(namespace: str, name: str, stamp: str) -> None:
    kube.custom().patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        tenant.PLURAL,
        name,
        {"metadata": {"annotations": {WAKE_ANNOTATION: stamp}}},
    )


@kopf.on.delete(GROUP, VERSION, tenant.PLURAL)
def tenant_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(tenant.KIND, tenant.PLURAL, body)
    with exclusive(obj.uid):
        guard_delete(obj, retry, S, lambda: tenant.delete(obj, S))
    forget(obj.uid)


# -- Application --------------------------------------------------------------------------
REFRESH_ANNOTATION = application.REFRESH_ANNOTATION
_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        found = S.helm or shutil.which("helm")
        if not found:
            raise kopf.PermanentError("no helm: set HERD_HELM or put helm v4 on PATH")
        helm = Path(found)
        cache = RepoCache(
            root=(S.state_dir / "git").absolute(),
            rewrites=S.git_url_rewrites,
            known_hosts=S.ssh_known_hosts,
        )
        api = client.ApiClient()
        live, memo = None, None
        if S.app_live_cache:
            live = LiveCache(api.configuration)
            memo = Memo(S.app_revalidate_interval)
            # A tracked object that drifts, comes back in line, goes or changes health
            # wakes its Application at once (selfHeal then reverts a hand edit).
            live.listen(Watcher(memo, Debouncer(S.app_event_debounce, wake_application)))
            live.informer(NAMESPACES, "/api/v1/namespaces", wait=False)
        _engine = Engine(
            api,
            cache,
            helm,
            wave_health_gate=S.wave_health_gate,
            limits=Limits(max_bytes=S.app_max_rendered_bytes, max_objects=S.app_max_objects),
            local_sources=S.local_sources,
            live=live,
            memo=memo,
            concurrency=S.app_sync_concurrency,
        )
    return _engine


def wake_application(app_id: str) -> None:
    """Reconcile an Application now: the same refresh the webhook asks for."""
    namespace, _, name = app_id.partition("/")
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            application.PLURAL,
            name,
            {"metadata": {"annotations": {REFRESH_ANNOTATION: application.stamp()}}},
        )
    except client.ApiException as err:
        if err.status != 404:
            raise


def application_in_scope(namespace: str | None, **_: Any) -> bool:
    """Applications are reconciled only in the configured namespaces (Argo's
    application.namespaces): who may create an Application elsewhere gets nothing from it."""
    return application.in_scope(namespace or "", S)


def application_cascades(namespace: str | None, body: kopf.Body, **_: Any) -> bool:
    return application_in_scope(namespace) and application.cascades(body)


@kopf.on.resume(GROUP, VERSION, application.PLURAL, when=application_in_scope)
@kopf.on.create(GROUP, VERSION, application.PLURAL, when=application_in_scope)
@kopf.on.update(GROUP, VERSION, application.PLURAL, when=application_in_scope)
def application_reconcile(body: kopf.Body, **_: Any) -> None:
    obj = Object(application.KIND, application.PLURAL, body)
    with exclusive(obj.uid):
        current = fresh(obj)
        if current is not None:
            application.reconcile(current, engine(), S)


@kopf.timer(
    GROUP,
    VERSION,
    application.PLURAL,
    interval=S.app_tick,
    initial_delay=S.app_tick,
    when=application_in_scope,
)
def application_poll(body: kopf.Body, **_: Any) -> None:
    # Kopf's copy first: a big app's whole status (thousands of resources) is not read
    # from the API server every tick to find that nothing is due. Kopf's copy is at most
    # one watch event old, so what it misses is due at the next tick; a fresh read decides.
    if not application.due(Object(application.KIND, application.PLURAL, body), S, _now()):
        return
    with exclusive(body["metadata"]["uid"]):
        obj = fresh(Object(application.KIND, application.PLURAL, body))
        if obj is not None and application.due(obj, S, _now()):
            application.reconcile(obj, engine(), S)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@kopf.on.event(GROUP, VERSION, application.PLURAL, when=application_cascades)
def application_cascade(type: str, body: kopf.Body, **_: Any) -> None:
    """Cascade delete, only with Argo's resources finalizer (ours or Argo's name) on the
    Application: what it tracks goes first, then the finalizer, then the Application.
    A raw event handler, not on.delete: that one needs Kopf's own finalizer in place, which a
    merge patch or `kubectl apply` of `finalizers` silently drops."""
    if type == "DELETED" or not body["metadata"].get("deletionTimestamp"):
        return
    obj = Object(application.KIND, application.PLURAL, body)
    with exclusive(obj.uid):
        application.cascade_delete(obj, engine())


def application_deleted(namespace: str | None, type: str | None = None, **_: Any) -> bool:
    return type == "DELETED" and application_in_scope(namespace)


@kopf.on.event(GROUP, VERSION, application.PLURAL, when=application_deleted)
def application_gone(body: kopf.Body, **_: Any) -> None:
    """A deleted Application's verdicts and watches go with it."""
    if _engine is not None:
        _engine.forget(f"{body['metadata']['namespace']}/{body['metadata']['name']}")


def refresh_applications(urls: set[str], branch: str, default_branch: str | None) -> list[str]:
    """Called by the webhook: mark matching Applications for an immediate reconcile."""
    api = kube.custom()
    found: list[dict[str, Any]] = api.list_cluster_custom_object(  # type: ignore[index]
        GROUP, VERSION, application.PLURAL
    )["items"]
    names = []
    for app in found:
        if application_in_scope(app["metadata"]["namespace"]) and webhook.matches(
            app, urls, branch, default_branch
        ):
            meta = app["metadata"]
            api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                application.PLURAL,
                meta["name"],
                {"metadata": {"annotations": {REFRESH_ANNOTATION: application.stamp()}}},
            )
            names.append(f"{meta['namespace']}/{meta['name']}")
    return names
