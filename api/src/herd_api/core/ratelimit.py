"""A token bucket: at most `rate` events per second on average, bursts up to `burst`."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class TokenBucket:
    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_take(self) -> float:
        """Take a token if one is there (0.0); else how long until one will be."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def refund(self) -> None:
        """Give back a token taken for what did not happen after all."""
        with self._lock:
            self._refill()
            self._tokens = min(self.burst, self._tokens + 1)

    def take(self, stop: threading.Event | None = None) -> bool:
        """Block until a token is taken (True) or `stop` is set (False)."""
        while True:
            wait = self.try_take()
            if wait == 0.0:
                return True
            if stop is not None and stop.wait(wait):
                return False
            if stop is None:
                time.sleep(wait)


class KeyedLimiter:
    """One bucket per client (an IP address), for per-client rate limits.

    Memory is bounded by `max_clients`: when full, the least recently seen client is
    forgotten, one at a time. Its bucket has had the longest to refill (usually it is full,
    which is the same as forgotten), and a flood of new addresses never clears the buckets
    of the clients it is competing with.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> float:
        """0.0 when allowed; else seconds until the client may try again."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                while len(self._buckets) >= self.max_clients:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            else:
                self._buckets.move_to_end(key)
        return bucket.try_take()

    def refund(self, key: str) -> None:
        """Give `key` back the token its last check took (when what it was for did not
        happen); nothing if it has been forgotten meanwhile."""
        with self._lock:
            bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.refund()
