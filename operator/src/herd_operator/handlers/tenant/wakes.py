"""What wakes a Tenant whose handler has ended: its CognitoClient's new state, or a new logo.

A wake is an annotation change (WAKE_ANNOTATION), so kopf's own handler, with its retries,
runs the Tenant. Both wakes decide in kopf's `when` filters, in its event loop: the events
that call for nothing (nearly all, and every one of a restart's listing) take no worker
thread and log no line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import kopf

from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import GROUP, VERSION, WAKE_ANNOTATION
from herd_operator.handlers.tenant import reconciler
from herd_operator.handlers.tenant.waits import child_waits, tenant_of
from herd_operator.settings import get_settings

# What a child's wake needs to know of each Tenant, by (namespace, name), kept from the Tenant
# watch kopf runs anyway: no read of the Tenant per child event. Our own map, not a kopf
# index: kopf holds every handler back until an index has seen every object, which with a
# worker limit (fewer places than objects) would never happen.
Seen = tuple[str, tuple[str, ...], str | None, bool]  # uid, child's step, wake stamp, deleting
tenants_seen: dict[tuple[str, str], Seen] = {}


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    return (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))


def _seen(body: Mapping[str, Any]) -> Seen:
    meta = body["metadata"]
    step = cond.get((body.get("status") or {}).get("conditions"), reconciler.CLIENT) or {}
    return (
        str(meta.get("uid")),
        reconciler.client_step(step, of_tenant=True),
        (meta.get("annotations") or {}).get(WAKE_ANNOTATION),
        bool(meta.get("deletionTimestamp")),
    )


def seen_changes(type: str, body: kopf.Body, **_: Any) -> bool:
    """Kopf's filter of tenant_seen: only the events that change what the map holds (3 of a
    new Tenant's ~5), so kopf runs and logs nothing for the rest."""
    return type == "DELETED" or tenants_seen.get(_key(body)) != _seen(body)


async def tenant_seen(type: str, body: kopf.Body, **_: Any) -> None:
    key = _key(body)
    if type == "DELETED":
        seen = tenants_seen.get(key)
        if seen is not None and seen[0] == str(body["metadata"].get("uid")):  # not a namesake's
            del tenants_seen[key]
        return
    tenants_seen[key] = _seen(body)


def remember(body: Mapping[str, Any]) -> None:
    """The Tenant as its handler's own last write left it (its watch events wait while its
    handler runs, and the child's may come first)."""
    tenants_seen[_key(body)] = _seen(body)


def child_wake(type: str, body: kopf.Body) -> tuple[str, str, str] | None:
    """The wake a Tenant's CognitoClient event calls for, as (namespace, Tenant, stamp), or
    None. The Tenant's side comes from tenants_seen (at worst a moment old: then one wake
    too many, which finds nothing to do; not there yet at a start-up: the Tenant's own
    resume reads its child)."""
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return None  # a child going (a Tenant moved to the shared client) is nothing to it
    ready = cond.get((body.get("status") or {}).get("conditions"), cond.READY) or {}
    if not ready:
        return None  # not reconciled yet: nothing the Tenant, which made it, does not know
    owner = tenant_of(body)
    if owner is None or owner["uid"] in child_waits:
        return None  # not a Tenant's, or its handler waits for this very change, in place
    namespace = body["metadata"]["namespace"]
    seen = tenants_seen.get((namespace, owner["name"]))
    if seen is None or seen[0] != owner["uid"]:
        return None
    _uid, step, stamp, deleting = seen
    if deleting or reconciler.client_step(ready) == step:
        return None  # the Tenant has seen this state of its child already
    # The stamp names the child's state (its Ready transition), not its resourceVersion: the
    # child's later writes in that state (kopf's own annotations, a lastSyncedTime) then
    # wake the Tenant no second time while tenants_seen has not yet caught up with the wake.
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


def calls_for_child_wake(type: str, body: kopf.Body, **_: Any) -> bool:
    return child_wake(type, body) is not None


def child_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """A Tenant's CognitoClient changed state (Ready, or why not): wake the Tenant, whose
    handler ended Pending rather than polling its child. A restart resumes every Tenant not
    Ready and the watch replays every child, so no wake is lost. A watch event, not a change
    handler: the child's own diff base stays as it is."""
    found = child_wake(type, body)
    if found is not None:
        wake(*found)


def logo_wake(type: str, body: kopf.Body) -> str | None:
    """The wake a Tenant's event calls for when its status has a logo the realm does not show
    yet: a stamp of the logo's URL, so one logo wakes it once."""
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return None
    url = reconciler.logo_to_apply(body.get("status") or {}, get_settings())
    if url is None:
        return None
    stamp = f"logo-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
    return (
        None if (body["metadata"].get("annotations") or {}).get(WAKE_ANNOTATION) == stamp else stamp
    )


def calls_for_logo_wake(type: str, body: kopf.Body, **_: Any) -> bool:
    return logo_wake(type, body) is not None


def logo_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """The thumbnail worker wrote a new status.logo: wake the Tenant so its handler gives the
    realm the logo (a status change runs no handler)."""
    stamp = logo_wake(type, body)
    if stamp is not None:
        wake(body["metadata"]["namespace"], body["metadata"]["name"], stamp)


def wake(namespace: str, name: str, stamp: str) -> None:
    kube.custom().patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        reconciler.PLURAL,
        name,
        {"metadata": {"annotations": {WAKE_ANNOTATION: stamp}}},
    )
