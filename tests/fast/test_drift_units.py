"""The drift sweep's pure parts (herd_operator.drift): which objects it checks, and when a
replica is outranked in its peering."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kubernetes.client.exceptions import ApiException

from herd_operator import drift
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


def expired(fresh_token: str | None) -> ApiException:
    """A 410 as the API server answered an expired continue token in bench/tenants.py's
    10,000-client sweep (etcd compacted meanwhile), with or without a fresh token."""
    err = ApiException(status=410, reason="Gone")
    body: dict[str, object] = {"kind": "Status", "code": 410, "reason": "Expired"}
    if fresh_token:
        body["metadata"] = {"continue": fresh_token}
    err.body = json.dumps(body)
    return err


class Pages:
    """A two-page list whose first continue token ("old") has expired."""

    def __init__(self, fresh_token: str | None) -> None:
        self.fresh_token = fresh_token
        self.asked: list[object] = []

    def list_cluster_custom_object(self, *_: object, **kwargs: object) -> dict[str, object]:
        token = kwargs.get("_continue")
        self.asked.append(token)
        if token is None:
            return {"metadata": {"continue": "old"}, "items": [{"n": 1}, {"n": 2}]}
        if token == "old":
            raise expired(self.fresh_token)
        return {"metadata": {}, "items": [{"n": 3}]}


def test_a_sweep_goes_on_past_an_expired_page(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = Pages("fresh")
    monkeypatch.setattr(drift.kube, "custom", lambda: pages)
    assert [i["n"] for i in drift.listed("cognitoclients", [])] == [1, 2, 3]
    assert pages.asked == [None, "old", "fresh"]


def test_an_expired_page_without_a_fresh_token_fails_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drift.kube, "custom", lambda: Pages(None))
    with pytest.raises(ApiException):
        list(drift.listed("cognitoclients", []))
