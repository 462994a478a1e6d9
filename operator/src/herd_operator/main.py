"""Every kopf handler of the operator, in one place; the work lives in handlers/<kind>.py.

Run with `herd operator run`.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from herd_operator import kube, metrics
from herd_operator.constants import FINALIZER, GROUP, VERSION
from herd_operator.handlers import cognitoclient, sestemplate, tenant
from herd_operator.handlers.common import Object, exclusive, forget, fresh, guard, reconcile
from herd_operator.settings import get_settings

S = get_settings()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Finalizer and progress bookkeeping under our own group, not kopf.zalando.org.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
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
    kube.load_config(S)
    metrics.serve(S.metrics_port)
    logging.getLogger(__name__).info("herd operator ready (environment %s)", S.environment)


# -- SESTemplate --------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, sestemplate.PLURAL)
@kopf.on.create(GROUP, VERSION, sestemplate.PLURAL)
@kopf.on.update(GROUP, VERSION, sestemplate.PLURAL)
def sestemplate_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(sestemplate.KIND, sestemplate.PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, S, lambda: sestemplate.reconcile(obj, S))


@kopf.timer(
    GROUP, VERSION, sestemplate.PLURAL, interval=S.drift_interval, initial_delay=S.drift_interval
)
def sestemplate_drift(body: kopf.Body, **kwargs: Any) -> None:
    with exclusive(body["metadata"]["uid"]):
        obj = fresh(Object(sestemplate.KIND, sestemplate.PLURAL, body))
        if obj is not None:
            guard(obj, kwargs.get("retry", 0), S, lambda: sestemplate.repair_drift(obj, S))


@kopf.on.delete(GROUP, VERSION, sestemplate.PLURAL)
def sestemplate_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(sestemplate.KIND, sestemplate.PLURAL, body)
    with exclusive(obj.uid):
        guard(obj, retry, S, lambda: sestemplate.delete(obj, S))
    forget(obj.uid)


# -- CognitoClient ------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, cognitoclient.PLURAL)
@kopf.on.create(GROUP, VERSION, cognitoclient.PLURAL)
@kopf.on.update(GROUP, VERSION, cognitoclient.PLURAL)
def cognitoclient_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(cognitoclient.KIND, cognitoclient.PLURAL, body)
    with exclusive(obj.uid):
        reconcile(obj, retry, S, lambda: cognitoclient.reconcile(obj, S))


@kopf.timer(
    GROUP, VERSION, cognitoclient.PLURAL, interval=S.drift_interval, initial_delay=S.drift_interval
)
def cognitoclient_drift(body: kopf.Body, **kwargs: Any) -> None:
    retry = int(kwargs.get("retry", 0))
    with exclusive(body["metadata"]["uid"]):
        obj = fresh(Object(cognitoclient.KIND, cognitoclient.PLURAL, body))
        if obj is None:
            return
        current = obj
        gone = False

        def repair() -> None:
            nonlocal gone
            gone = cognitoclient.repair_drift(current, S)

        guard(obj, retry, S, repair)
        if gone:
            obj.event(
                "DriftRepaired",
                "app client was deleted outside Herd; creating it again",
                warning=True,
            )
            reconcile(obj, retry, S, lambda: cognitoclient.reconcile(current, S))


@kopf.on.delete(GROUP, VERSION, cognitoclient.PLURAL)
def cognitoclient_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(cognitoclient.KIND, cognitoclient.PLURAL, body)
    with exclusive(obj.uid):
        guard(obj, retry, S, lambda: cognitoclient.delete(obj, S))
    forget(obj.uid)


@kopf.on.event("", "v1", "secrets", labels={cognitoclient.SECRET_LABEL: kopf.PRESENT})
def cognitoclient_secret_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """A credentials Secret was deleted by hand: write it again at once."""
    if event["type"] != "DELETED":
        return
    meta = body["metadata"]
    owner = kube.get_object(
        cognitoclient.PLURAL, meta["namespace"], meta["labels"][cognitoclient.SECRET_LABEL]
    )
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return  # the owner is going too: garbage collection, not an accident
    if owner.get("spec", {}).get("secretName") != meta["name"]:
        return
    obj = Object(cognitoclient.KIND, cognitoclient.PLURAL, kopf.Body(cast(Any, owner)))
    with exclusive(obj.uid):
        cognitoclient.restore_secret(obj, S)


# -- Tenant -------------------------------------------------------------------------------
@kopf.on.resume(GROUP, VERSION, tenant.PLURAL)
@kopf.on.create(GROUP, VERSION, tenant.PLURAL)
@kopf.on.update(GROUP, VERSION, tenant.PLURAL)
def tenant_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(tenant.KIND, tenant.PLURAL, body)
    with exclusive(obj.uid):
        try:
            reconcile(obj, retry, S, lambda: tenant.reconcile(obj, S))
        except kopf.PermanentError:
            obj.patch_status(phase="Failed")
            raise


@kopf.on.delete(GROUP, VERSION, tenant.PLURAL)
def tenant_delete(body: kopf.Body, retry: int, **_: Any) -> None:
    obj = Object(tenant.KIND, tenant.PLURAL, body)
    with exclusive(obj.uid):
        guard(obj, retry, S, lambda: tenant.delete(obj, S))
    forget(obj.uid)
