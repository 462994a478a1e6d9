"""The operator's start-up and its switchboard: every kopf registration, one line each,
pointing at its kind's module (handlers/<kind>/), where the whole of that kind's behaviour
lives.

Run with `herd operator run` (`run`). With sharding on, two kopf operators share the process:
the Applications' on every replica (standalone, each app worked on by its owner only:
sharding.py), every other kind's with peering (one working replica).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import kopf

from herd_core import kube
from herd_core.constants import FINALIZER, GROUP, VERSION
from herd_operator import drift, kubesession, metrics, sharding, slimwatch
from herd_operator.diffbase import DigestDiffBaseStorage
from herd_operator.gitops import webhook
from herd_operator.handlers import application, cognitoclient, sestemplate, tenant
from herd_operator.handlers.common import needs_resume, use_kopf_settings
from herd_operator.settings import get_settings

S = get_settings()
Handler = Callable[..., Any]
Filter = Callable[..., bool] | None
_STARTED = time.time()
_sweeper: drift.Sweeper | None = None
# Kopf pauses every handler of a replica that peering does not elect, whatever its kind: with
# sharding the Applications' handlers are a registry (and an operator) of their own, without
# peering. Unsharded, they share the one default registry as before.
MAIN = kopf.get_default_registry()
APPS_REGISTRY = kopf.OperatorRegistry() if S.sharding_enabled else MAIN
_membership: sharding.Membership | None = None


def peering_priority() -> int:
    """The configured priority, or one that falls with the start time (ms) with random low
    digits, so two replicas started in the same millisecond still differ."""
    if S.peering_priority is not None:
        return S.peering_priority
    return (10**13 - int(_STARTED * 1000)) * 1000 + random.randrange(1000)


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    return await kubesession.login(S.kube_connections, S.watch_namespaces, **kwargs)


class QuietTicks(logging.Filter):
    """Kopf logs every run of a timer that returns, at INFO: with 1,000 Applications ticking
    every few seconds, hundreds of lines a second that say nothing (a failing tick is still
    logged, as a warning)."""

    SAID = "Timer 'application_poll' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.SAID


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    if not any(isinstance(f, QuietTicks) for f in logging.getLogger("kopf.objects").filters):
        logging.getLogger("kopf.objects").addFilter(QuietTicks())
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
    # Safe only without kopf indices (see tenant.wakes). A worker keeps its place while it
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
    # A deleted Application waits for its poll timer to exit; check every second, not 60.
    settings.background.cancellation_polling = 1


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure_kopf(settings)
    # Peering: exactly one working replica. Kopf pauses every replica of equal priority, so
    # replicas of one Deployment must differ: the longest-running one leads, a new one waits
    # (a rolling update hands over when the old one says goodbye; a killed one is replaced
    # when its record's lifetime runs out).
    settings.peering.priority = peering_priority()
    settings.peering.lifetime = S.peering_lifetime
    use_kopf_settings(settings)
    kube.load_config(S)
    metrics.serve(S.metrics_port, S.listen_host)
    if S.webhook_port:
        if not S.webhook_secret:
            raise kopf.PermanentError("HERD_WEBHOOK_PORT is set but HERD_WEBHOOK_SECRET is not")
        await webhook.serve(S.listen_host, S.webhook_port, S.webhook_secret, application.refresh)
    global _sweeper
    if _sweeper is None:
        kinds = [
            drift.Kind(sestemplate.KIND, sestemplate.PLURAL, sestemplate.repair),
            drift.Kind(cognitoclient.KIND, cognitoclient.PLURAL, cognitoclient.repair),
        ]
        _sweeper = drift.Sweeper(S, kinds, settings.peering.priority)
        _sweeper.start()
        application.use_peering(_sweeper.active_cached)
    logging.getLogger(__name__).info("herd operator ready (environment %s)", S.environment)


async def configure_apps(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Start-up of the Applications' operator (sharding on): kopf's settings as the other's,
    the diff base in memory (sharding.MemoryDiffBase), and this replica's membership."""
    global _membership
    configure_kopf(settings)
    diffbase = sharding.MemoryDiffBase()
    settings.persistence.diffbase_storage = diffbase
    kube.load_config(S)
    if _membership is None:
        _membership = sharding.Membership(
            S.operator_namespace,
            S.sharding_identity or sharding.default_identity(),
            S.sharding_lease_duration,
            S.sharding_renew_interval,
            on_change=application.reshard,
        )
        application.use_sharding(_membership, diffbase)
        _membership.start()


async def goodbye(**_: Any) -> None:
    """A stopping replica's apps go to the others at once: its work in flight ends first."""
    if _membership is not None:
        await asyncio.to_thread(_membership.stop, S.sharding_lease_duration)


_stop: asyncio.Event | None = None  # both kopf operators' stop flag (sharding on)


async def stop_both(**_: Any) -> None:
    """One of the two kopf operators stops (a signal reaches the last one started): the other
    with it. Stopped only after it, the other's tasks counted as the first's hung ones, which
    kopf waits 5 s for, and then its own the same: a replica took 10 s to stop, not 0.3 s."""
    if _stop is not None:
        _stop.set()


if APPS_REGISTRY is not MAIN:
    kopf.on.login(registry=APPS_REGISTRY)(login)
    kopf.on.startup(registry=APPS_REGISTRY)(configure_apps)
    # goodbye first (cleanups run in order): the Tenants' operator, stopped next, would
    # cancel what is left of this one's tasks after its own 5 s wait.
    kopf.on.cleanup(registry=APPS_REGISTRY)(goodbye)
    kopf.on.cleanup(registry=APPS_REGISTRY)(stop_both)
    kopf.on.cleanup(registry=MAIN)(stop_both)


async def run(**options: Any) -> None:
    """The operator until it is stopped: one kopf operator, or with sharding two, either
    stopping the other (each takes the signals in turn: the last one started gets them)."""
    global _stop
    if APPS_REGISTRY is MAIN:
        await kopf.operator(**options)
        return
    _stop = stop = asyncio.Event()

    async def until_stopped(**kwargs: Any) -> None:
        try:
            await kopf.operator(stop_flag=stop, **kwargs)
        finally:
            stop.set()

    await asyncio.gather(
        until_stopped(**options),
        until_stopped(
            **{
                **options,
                "liveness_endpoint": None,
                "peering_name": None,
                "standalone": True,
                "registry": APPS_REGISTRY,
            }
        ),
    )


def _registry(plural: str) -> kopf.OperatorRegistry:
    return APPS_REGISTRY if plural == application.PLURAL else MAIN


def on_change(
    plural: str, id: str, fn: Handler, when: Filter = None, resume: Filter = None
) -> None:
    """Resume, create and update of one kind, to one handler. The ids are the handlers' names
    of old: kopf keys its progress annotations and log lines by them."""
    registry = _registry(plural)
    kopf.on.resume(GROUP, VERSION, plural, id=id, when=resume or when, registry=registry)(fn)
    kopf.on.create(GROUP, VERSION, plural, id=id, when=when, registry=registry)(fn)
    kopf.on.update(GROUP, VERSION, plural, id=id, when=when, registry=registry)(fn)


def on_delete(plural: str, id: str, fn: Handler) -> None:
    kopf.on.delete(GROUP, VERSION, plural, id=id, registry=_registry(plural))(fn)


def on_event(plural: str, id: str, fn: Handler, when: Filter = None, labels: Any = None) -> None:
    registry = _registry(plural)
    kopf.on.event(GROUP, VERSION, plural, id=id, when=when, labels=labels, registry=registry)(fn)


def every(plural: str, id: str, fn: Handler, seconds: float, when: Filter = None) -> None:
    timer = kopf.timer(
        GROUP,
        VERSION,
        plural,
        id=id,
        interval=seconds,
        initial_delay=seconds,
        when=when,
        registry=_registry(plural),
    )
    timer(fn)


# Each kind's handlers, filters and flow are in handlers/<kind>/. A resume skips an object
# Ready at its generation (needs_resume); an Application is looked at again on a resume.
TENANTS, CLIENTS, TEMPLATES, APPS = (
    tenant.PLURAL,
    cognitoclient.PLURAL,
    sestemplate.PLURAL,
    application.PLURAL,
)
CHILDREN = {tenant.TENANT_LABEL: kopf.PRESENT}  # a Tenant's CognitoClients

on_change(TEMPLATES, "sestemplate_reconcile", sestemplate.on_change, resume=needs_resume)
on_delete(TEMPLATES, "sestemplate_delete", sestemplate.on_delete)

on_change(CLIENTS, "cognitoclient_reconcile", cognitoclient.on_change, resume=needs_resume)
on_delete(CLIENTS, "cognitoclient_delete", cognitoclient.on_delete)

on_change(TENANTS, "tenant_reconcile", tenant.on_change, resume=tenant.needs_resume)
on_delete(TENANTS, "tenant_delete", tenant.on_delete)
on_event(TENANTS, "tenant_seen", tenant.seen, tenant.seen_changes)
on_event(TENANTS, "tenant_logo_changed", tenant.logo_changed, tenant.logo_wakes)
on_event(CLIENTS, "tenant_child_seen", tenant.child_seen, tenant.hands_over, CHILDREN)
on_event(CLIENTS, "tenant_child_changed", tenant.child_changed, tenant.child_wakes, CHILDREN)

on_change(APPS, "application_reconcile", application.on_change, application.mine)
every(APPS, "application_poll", application.poll, S.app_tick, application.in_scope)
on_event(APPS, "application_cascade", application.cascade, application.cascades)
on_event(APPS, "application_gone", application.gone, application.deleted)
on_event(APPS, "application_seen", application.seen, application.seen_changes)
