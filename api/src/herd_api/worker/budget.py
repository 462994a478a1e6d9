"""One SES send budget per environment, shared by every worker replica.

SES enforces MaxSendRate per account and region, not per process: ten replicas each with a
local token bucket would send ten times that. The budget is one DynamoDB item holding the
times of the last `limit` sends (a sliding-window log). A worker may send at `now` only if
fewer than `limit` sends happened in the window before it; it records `now` with a write
conditioned on the item's version, so concurrent workers are serialised by DynamoDB: of two
that read the same version only one write lands, the other reads again. Hence, in any window
of `window` seconds, at most `limit` recorded send times, whatever the number of workers.

window = max(1 s, 1/rate) and limit = max(1, floor(rate * window)): 10/s is 10 per second,
0.05/s is 1 per 20 s.

A worker reserves for all its threads waiting at once in one read and one write: the next
send times the window allows from when its write will have landed (the write's recent
latency ahead: a slow DynamoDB would otherwise hand out times already past), up to one
window ahead (a read and a write per send made the
item, not SES, the limit: 20/s through the local AWS against a configured 50/s). Each thread
takes one, waits for it and sends; the recorded time is the one the thread sends at (or
right after), and what the worker stores as the job's send time. A reservation kept past its
time is dropped, never sent late in a bunch: fewer sends, never more.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from typing import Any

from botocore.exceptions import ClientError

MAX_WRITE_LATENCY = 10.0  # seconds: a write slower than this is an outage, not a latency


class SharedBudget:
    def __init__(self, ddb: Any, table: str, key: str, rate: float) -> None:
        self._ddb, self._table, self._key = ddb, table, key
        self.rate = rate
        self.window = max(1.0, 1.0 / rate)
        self.limit = max(1, math.floor(rate * self.window + 1e-9))
        # The threads of one worker take turns at the item: only replicas race for it (a
        # lost race costs a read and a write again, and the item is one hot key).
        self._turn = threading.Lock()
        self._reserved: deque[float] = deque()  # send times this worker holds, in order
        self._waiting = 0  # threads in take() without a send time yet
        self._expected = 0  # messages the worker has in hand, not given a send time yet
        self._mine = threading.local()  # whether this thread's message took its send time
        # A reservation not taken within this long after its time is dropped (SES's bucket
        # holds a second of its rate: a few sends this late do not bunch up against it).
        self.grace = 0.25
        # How long the item's conditional write takes (a moving average): reservations start
        # that far ahead, or a slow DynamoDB would hand out times already past their grace
        # (each dropped, the next turn the same: sends at a trickle of the rate).
        self.write_latency = 0.0
        self._writes = 0

    def try_take(self, wanted: int = 1) -> tuple[list[float], float]:
        """Reserve up to `wanted` send times (ascending, none more than a window ahead):
        (them, 0); else ([], seconds to wait)."""
        item = self._ddb.get_item(
            TableName=self._table, Key={"key": {"S": self._key}}, ConsistentRead=True
        ).get("Item")
        read_at = time.time()
        now = read_at + self.write_latency  # when the write will have landed
        stamps = sorted(float(x) for x in item["stamps"]["NS"]) if item else []
        version = int(item["version"]["N"]) if item else 0
        taken: list[float] = []
        for _ in range(max(1, min(wanted, self.limit))):
            log = [*stamps, *taken]
            # Never before the last recorded time (another sender's clock may be ahead of
            # ours), and the `limit`-th last at least a window back.
            at = max(now, log[-1] if log else now)
            if len(log) >= self.limit:
                at = max(at, log[-self.limit] + self.window)
            if at > now + self.window or (taken and at > now + self.window / 2):
                break  # not this far ahead: leave the budget to the other replicas
            taken.append(at)
        if not taken:
            log = stamps
            at = max(log[-1], log[-self.limit] + self.window if len(log) >= self.limit else 0)
            return [], at - self.window - now
        kept = [*stamps, *taken][-self.limit :]
        condition = "attribute_not_exists(#k)" if item is None else "#v = :v"
        values: dict[str, Any] = {} if item is None else {":v": {"N": str(version)}}
        names = {"#k": "key"} if item is None else {"#v": "version"}
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={
                    "key": {"S": self._key},
                    "stamps": {"NS": [f"{s:.6f}" for s in kept]},
                    "version": {"N": str(version + 1)},
                },
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return [], random.uniform(0, 0.02)  # another worker took this turn: read again
        took = min(time.time() - read_at, MAX_WRITE_LATENCY)
        self.write_latency += (0.3 if self._writes else 1.0) * (took - self.write_latency)
        self._writes += 1
        return taken, 0.0

    def expect(self, sends: int) -> None:
        """The worker received `sends` more messages: reserve for them together. Each one's
        thread calls settle() when done with it, whether it took a send time or not."""
        with self._turn:
            self._expected += sends

    def settle(self) -> None:
        """This thread's message needs no send time any more (sent, dropped or failed)."""
        if getattr(self._mine, "took", False):
            self._mine.took = False  # its expectation went with the reservation
            return
        with self._turn:
            self._expected = max(0, self._expected - 1)

    def take(self, stop: threading.Event) -> float | None:
        """Block until a send may go (its recorded time) or `stop` is set (None)."""
        stamp = self._reservation(stop)
        if stamp is None or stop.wait(max(0.0, stamp - time.time())):
            return None
        return stamp

    def _reservation(self, stop: threading.Event) -> float | None:
        """A send time of this worker's (reserved for the threads waiting now, together)."""
        with self._turn:
            self._waiting += 1
        try:
            while not stop.is_set():
                with self._turn:
                    now = time.time()
                    while self._reserved and self._reserved[0] < now - self.grace:
                        self._reserved.popleft()  # its thread went away: too late to use
                    wait = 0.0
                    if not self._reserved:
                        taken, wait = self.try_take(max(self._waiting, self._expected))
                        self._reserved.extend(taken)
                    if self._reserved:
                        self._expected = max(0, self._expected - 1)
                        self._mine.took = True
                        return self._reserved.popleft()
                if stop.wait(wait):
                    return None
            return None
        finally:
            with self._turn:
                self._waiting -= 1
