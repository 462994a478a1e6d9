"""A token bucket: at most `rate` events per second on average, bursts up to `burst`."""

from __future__ import annotations

import threading
import time


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
