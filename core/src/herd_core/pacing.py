"""Client-side pacing of AWS calls by the request-rate quotas of herd_core.quotas.

AWS throttles a rate quota for the whole account (Cognito: per category, and for some
categories also per operation and user pool; SES: each non-sending action at one a second).
A burst of 1,000 signups made as fast as threads allow is throttled, retried, throttled
again; paced, it waits in line inside the quota. One pacer per quota (and per pool where
Cognito counts per pool) is shared by every client and thread of the process: the boto3
client factory (herd_core.aws) hooks it before each attempt (AWS counts a retry as a
request too), so no call site paces itself.

Each process paces to `aws_pace_share` of a quota, leaving the rest for the account's other
callers (the API, the worker, a person with the CLI): they are not coordinated, and what
overflows is throttled by AWS and retried by the SDK.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from herd_core import quotas


class Pacer:
    """Calls spaced `1/rate` seconds apart, first come first served across threads."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Sleep until this call's turn; the seconds waited."""
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._next)
            self._next = turn + self.interval
        delay = turn - now
        if delay > 0:
            time.sleep(delay)
        return delay


_pacers: dict[tuple[Any, ...], Pacer] = {}
_lock = threading.Lock()


def _pacer(key: tuple[Any, ...], rate: float) -> Pacer:
    with _lock:
        found = _pacers.get(key)
        if found is None or abs(found.interval - 1.0 / rate) > 1e-9:
            found = _pacers[key] = Pacer(rate)
        return found


def pace(
    service: str,
    region: str,
    operation: str,
    params: Mapping[str, Any],
    overrides: Mapping[str, float],
    share: float,
) -> float:
    """Wait for every rate quota the call counts against; the seconds waited in all."""
    waited = 0.0
    for quota in quotas.rates_of(service, operation):
        rate = quotas.limit(quota.key, overrides) * share
        if quota.per_operation:  # one bucket per action (SES's "once per second")
            waited += _pacer((quota.key, region, operation), rate).wait()
            continue
        waited += _pacer((quota.key, region), rate).wait()
        pool = params.get("UserPoolId")
        if quota.per_pool and pool:
            waited += _pacer((quota.key, region, pool, operation), quota.per_pool * share).wait()
    return waited


def reset() -> None:
    """Forget every pacer (tests)."""
    with _lock:
        _pacers.clear()
