"""One read shared by every caller that waits for it, never a read older than the caller.

Cognito cannot find an app client by name: the operator lists the whole pool before each
create (is the name taken? did our own create land before a crash?). Under a burst of N
creates that is N full lists of a pool that grows with each: quadratic. Here callers that
arrive while a list runs wait for the next one, and one list answers all of them: each caller
still gets a list that started after it asked (so it sees everything that existed when it
asked), and a burst costs a few lists instead of one per create.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self, fetch: Callable[[], T]) -> None:
        self._fetch = fetch
        self._cv = threading.Condition()
        self._done = 0  # lists finished
        self._running = False
        self._result: T | None = None
        self._error: BaseException | None = None

    def get(self) -> T:
        with self._cv:
            # A list already running started before this call: wait for the one after it.
            wanted = self._done + (2 if self._running else 1)
            while self._done < wanted:
                if self._running:
                    self._cv.wait()
                    continue
                self._running = True
                self._cv.release()
                result: T | None = None
                error: BaseException | None = None
                try:
                    result = self._fetch()
                except BaseException as err:  # handed to every waiter of this list
                    error = err
                finally:
                    self._cv.acquire()
                    self._running = False
                    self._done += 1
                    self._result, self._error = result, error
                    self._cv.notify_all()
            if self._error is not None:
                raise self._error
            return self._result  # type: ignore[return-value]
