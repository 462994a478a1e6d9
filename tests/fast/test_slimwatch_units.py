"""Kopf's watch events reach its queues without managedFields (herd_operator.slimwatch)."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching

from herd_operator import slimwatch


def body(name: str) -> dict[str, Any]:
    """As parsed from the API server's JSON: fresh strings, not this module's constants."""
    return json.loads(
        json.dumps(
            {
                "apiVersion": "platform.herd-itt.com/v1alpha1",
                "kind": "Tenant",
                "metadata": {
                    "name": name,
                    "namespace": "tenants",
                    "uid": f"uid-{name}",
                    "managedFields": [{"manager": "herd-operator", "fieldsV1": {"f:status": {}}}],
                },
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "message": "x" * 40}]
                },
            }
        )
    )


@pytest.fixture
def fake_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Kopf's own watch generator replaced by one that yields `events`, then slimmed."""
    events: list[Any] = []

    async def source(**_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event

    monkeypatch.setattr(watching, "continuous_watch", source)
    assert slimwatch.install()
    yield events


def test_kopfs_own_watch_loop_yields_slimmed_events(fake_source: list[Any]) -> None:
    listed = {"type": None, "object": body("a")}
    expected = copy.deepcopy(listed)
    del expected["object"]["metadata"]["managedFields"]
    changed = {"type": "MODIFIED", "object": body("b")}
    fake_source.extend([listed, watching.Bookmark.LISTED, changed])

    async def collect() -> list[Any]:
        seen = []
        # kopf's own loop, which its per-kind watcher runs (queueing.watcher)
        async for event in watching.infinite_watch(
            settings=kopf.OperatorSettings(),
            resource=None,
            namespace=None,
            _iterations=1,  # type: ignore[arg-type]
        ):
            seen.append(event)
        return seen

    key = lambda b: next(k for k in b["status"]["conditions"][0] if k == "message")  # noqa: E731
    assert key(listed["object"]) is not key(fake_source[2]["object"])  # as parsed: two strings
    seen = asyncio.run(collect())
    assert seen[0] == expected  # all but managedFields kept
    assert seen[0]["object"] is listed["object"]  # in place: no copy beside kopf's chunk
    assert seen[1] is watching.Bookmark.LISTED
    assert "managedFields" not in seen[2]["object"]["metadata"]
    # Keys and short values are one string across bodies; long ones stay as they were.
    a, b = seen[0]["object"], seen[2]["object"]
    assert key(a) is key(b)
    assert a["status"]["conditions"][0]["status"] is sys.intern("True")
    assert a["status"]["conditions"][0]["message"] == "x" * 40


def test_install_twice_wraps_once(fake_source: list[Any]) -> None:
    wrapped = watching.continuous_watch
    assert slimwatch.install()
    assert watching.continuous_watch is wrapped


def test_errors_and_odd_events_pass_through() -> None:
    error = {"type": "ERROR", "object": {"code": 410, "kind": "Status"}}
    assert slimwatch.slim_event(error) == error
    assert slimwatch.slim_event({"type": "BOOKMARK"}) == {"type": "BOOKMARK"}
    assert slimwatch.slim_event({"type": "ADDED", "object": {"metadata": None}}) == {
        "type": "ADDED",
        "object": {"metadata": None},
    }
