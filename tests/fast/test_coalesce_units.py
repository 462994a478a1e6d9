"""Coalesced reads (herd_operator.clients.coalesce): shared, and never older than the caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from herd_operator.clients.coalesce import Coalesced


def test_callers_during_a_read_share_the_next_one_and_see_what_came_before_them() -> None:
    started, release = threading.Event(), threading.Event()
    state = {"version": 0, "reads": 0}

    def fetch() -> int:
        state["reads"] += 1
        seen = state["version"]
        if state["reads"] == 1:
            started.set()
            assert release.wait(10)
        return seen

    reads: Coalesced[int] = Coalesced(fetch)
    with ThreadPoolExecutor(11) as pool:
        first = pool.submit(reads.get)
        assert started.wait(10)
        state["version"] = 1  # written after the first read began
        waiters = [pool.submit(reads.get) for _ in range(10)]
        release.set()
        assert first.result(10) == 0
        # All ten got a read that started after they asked (so it saw version 1), and they
        # shared it: two reads in all, not eleven.
        assert [w.result(10) for w in waiters] == [1] * 10
    assert state["reads"] == 2


def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again() -> None:
    calls = iter([RuntimeError("throttled"), 7])

    def fetch() -> int:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reads: Coalesced[int] = Coalesced(fetch)
    with pytest.raises(RuntimeError, match="throttled"):
        reads.get()
    assert reads.get() == 7
