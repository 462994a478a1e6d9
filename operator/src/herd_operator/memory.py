"""Keep the operator's resident memory near what it uses (glibc only; elsewhere a no-op).

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and memory
freed inside an arena mostly stays with the process. The operator parses large JSON answers
on 32 handler threads, so after a burst of Tenants its RSS stayed at the burst's peak, spread
over many arenas (bench/tenants.py). Two arenas, and handing free pages back after each drift
sweep, keep the RSS to what is live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
log = logging.getLogger("herd.memory")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: raises AttributeError elsewhere
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int = 2) -> None:
    """Before the threads start: at most `count` malloc arenas."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, count)


def trim() -> None:
    """Give free heap pages back to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
