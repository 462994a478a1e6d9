"""One SES send budget per environment, shared by every worker replica.

SES enforces MaxSendRate per account and region, not per process: ten replicas each with a
local token bucket would send ten times that. The budget is one DynamoDB item holding the
times of the last `limit` sends (a sliding-window log). A worker may send at `now` only if
fewer than `limit` sends happened in the window before it; it records `now` with a write
conditioned on the item's version, so concurrent workers are serialised by DynamoDB: of two
that read the same version only one write lands, the other reads again. Hence, in any window
of `window` seconds, at most `limit` recorded send times, whatever the number of workers.

window = max(1 s, 1/rate) and limit = max(1, floor(rate * window)): 10/s is 10 per second,
0.05/s is 1 per 20 s. The recorded time is taken right before the SES call, and is what the
worker stores as the job's send time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

from botocore.exceptions import ClientError


class SharedBudget:
    def __init__(self, ddb: Any, table: str, key: str, rate: float) -> None:
        self._ddb, self._table, self._key = ddb, table, key
        self.rate = rate
        self.window = max(1.0, 1.0 / rate)
        self.limit = max(1, math.floor(rate * self.window + 1e-9))
        # The threads of one worker take turns at the item: only replicas race for it (a
        # lost race costs a read and a write again, and the item is one hot key).
        self._turn = threading.Lock()

    def try_take(self) -> tuple[float | None, float]:
        """(the send time recorded, 0) when a send may go now; else (None, seconds to wait)."""
        item = self._ddb.get_item(
            TableName=self._table, Key={"key": {"S": self._key}}, ConsistentRead=True
        ).get("Item")
        now = time.time()
        stamps = sorted(float(x) for x in item["stamps"]["NS"]) if item else []
        version = int(item["version"]["N"]) if item else 0
        if stamps and now < stamps[-1]:
            return None, stamps[-1] - now  # our clock is behind the last sender's
        if len(stamps) >= self.limit and stamps[-self.limit] > now - self.window:
            return None, stamps[-self.limit] + self.window - now
        kept = [*stamps, now][-self.limit :]
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
            return None, random.uniform(0, 0.02)  # another worker took this turn: read again
        return now, 0.0

    def take(self, stop: threading.Event) -> float | None:
        """Block until a send may go (its recorded time) or `stop` is set (None)."""
        while not stop.is_set():
            with self._turn:
                stamp, wait = self.try_take()
            if stamp is not None:
                return stamp
            if stop.wait(wait):
                return None
        return None
