"""A Tenant's handler waiting in place for its new CognitoClient's first state.

The pass that creates the child registers a ChildWait; the child's own watch event hands its
new state over (child_seen), and the handler runs again at once, not ended Pending and woken
by an annotation (two more writes to the Tenant and a handler run queued behind every Tenant
not yet started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from herd_core import conditions as cond
from herd_operator.handlers.tenant.reconciler import KIND, client_step


@dataclass
class ChildWait:
    """A Tenant's handler, which takes its CognitoClient's new states while it runs."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    step: tuple[str, ...] | None = None  # the child's, as its latest event has it
    body: kopf.Body | None = None  # that event's child


# By Tenant uid. Only this process's handlers wait, so only its own events concern them.
child_waits: dict[str, ChildWait] = {}


async def child_moved(wait: ChildWait, recorded: tuple[str, ...], timeout: float) -> bool:
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


def tenant_of(child: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference of a CognitoClient's Tenant, if a Tenant made it."""
    refs = child["metadata"].get("ownerReferences") or []
    return next((o for o in refs if o.get("kind") == KIND), None)


def handover(type: str, body: kopf.Body) -> tuple[ChildWait, tuple[str, ...]] | None:
    """A new state of this child for its Tenant's handler waiting in place, if one waits."""
    if type == "DELETED":
        return None
    owner = tenant_of(body)
    wait = None if owner is None else child_waits.get(str(owner["uid"]))
    ready = cond.get((body.get("status") or {}).get("conditions"), cond.READY)
    if wait is None or ready is None:
        return None
    step = client_step(ready)
    return None if step == wait.step else (wait, step)


async def child_seen(type: str, body: kopf.Body, **_: Any) -> None:
    """Hand the child's new state to its Tenant's handler waiting in place (kopf filters the
    events with `handover`, so this runs only for one that hands something over)."""
    found = handover(type, body)
    if found is not None:
        wait, step = found
        wait.step, wait.body = step, body
        wait.changed.set()


def hands_over(type: str, body: kopf.Body, **_: Any) -> bool:
    """Kopf's filter of child_seen."""
    return handover(type, body) is not None
