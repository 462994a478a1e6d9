"""Kopf's watch events, slimmed before Kopf queues them.

At a start Kopf lists every object it serves and queues each listed body for its object's
worker; with `HERD_OBJECTS_IN_FLIGHT` workers at a time, nearly all of them wait in those
queues at once, and the allocators keep that peak afterwards (bench/README.md). A Ready
Tenant's body parsed from JSON is ~25 KB of Python objects: more than half of it is
managedFields, which neither Kopf nor our handlers read, and the same keys and short values
("type", "status", "True") are separate strings in every body. Without managedFields and
with those strings interned it is ~5 KB, so the RSS after a restart over 10,000 Tenants no
longer grows by ~43 KB per Tenant and CognitoClient.

Kopf has no hook for this: we wrap its watch generator (`kopf._cogs.clients.watching`,
pinned with kopf in uv.lock; tests/fast/test_slimwatch_units.py fails if the name moves).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

# Longer strings (messages, timestamps, uids) are mostly unique to their object.
INTERN_MAX = 32

log = logging.getLogger("herd.slimwatch")


def slim(value: Any) -> Any:
    """`value` (parsed JSON), in place, with interned keys and short strings. In place: kopf
    keeps its listed chunk until the chunk is done, so a copy would add to the peak."""
    if isinstance(value, dict):
        items = [(sys.intern(k), slim(v)) for k, v in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = slim(item)
    elif isinstance(value, str) and len(value) <= INTERN_MAX:
        return sys.intern(value)
    return value


def slim_event(event: Any) -> Any:
    """A raw watch event (or a listed object as kopf wraps it) without managedFields."""
    if not isinstance(event, dict):
        return event  # kopf's own markers (Bookmark.LISTED)
    body = event.get("object")
    if isinstance(body, dict):
        meta = body.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        slim(body)
    return event


def install() -> bool:
    """Slim every event of kopf's watch streams from now on; True if in place."""
    try:
        from kopf._cogs.clients import watching
    except ImportError:  # pragma: no cover - a kopf without the module: run unslimmed
        log.warning("kopf's watch module moved: watch events are not slimmed")
        return False
    original = getattr(watching, "continuous_watch", None)
    if original is None:  # pragma: no cover
        log.warning("kopf's continuous_watch moved: watch events are not slimmed")
        return False
    if getattr(original, "herd_slim", False):
        return True

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        async for event in original(**kwargs):
            yield slim_event(event)

    continuous_watch.herd_slim = True  # type: ignore[attr-defined]
    watching.continuous_watch = continuous_watch
    return True
