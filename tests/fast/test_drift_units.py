"""The drift sweep's pure parts (herd_operator.drift): which objects it checks, and when a
replica is outranked in its peering."""

from __future__ import annotations

import datetime as dt

from herd_operator.drift import due, outranked

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def item(generation: int = 2, observed: int = 2, ready: str = "True", deleting: bool = False):  # type: ignore[no-untyped-def]
    meta = {"name": "x", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T11:59:00Z"
    return {
        "metadata": meta,
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def test_only_ready_objects_at_their_generation_are_swept() -> None:
    assert due(item())
    assert not due(item(generation=3))  # a change the handler has not taken yet
    assert not due(item(ready="False"))
    assert not due(item(deleting=True))
    assert not due({"metadata": {"generation": 1}})


def peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = (NOW - dt.timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority, "lastseen": seen, "lifetime": lifetime}


def test_a_live_higher_peer_outranks_a_dead_one_does_not() -> None:
    assert outranked({"status": {"b": peer(20, 5)}}, 10, NOW)
    assert not outranked({"status": {"b": peer(20, 61)}}, 10, NOW)  # its record ran out
    assert not outranked({"status": {"me": peer(10, 1), "c": peer(5, 1)}}, 10, NOW)
    assert not outranked({}, 10, NOW)
    # Kopf writes lastseen without a zone: read as UTC.
    naive = {"priority": 20, "lastseen": "2026-12-01T11:59:55", "lifetime": 60}
    assert outranked({"status": {"b": naive}}, 10, NOW)
