"""CPU time each part of the local stack took over a span, from /proc (Linux only).

On the 2-core machine the API server, etcd, moto, the operator and the workers share the same
cores: a figure that misses its target is read against what each of them took of the
machine (cores times wall time) in the same span.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CLOCK = os.sysconf("SC_CLK_TCK")
# (what the command line contains, the part's name), first match wins.
PARTS = (
    ("gitops import forkserver", "operator"),  # the render fork server (and its renders)
    ("kube-apiserver", "API server"),
    ("etcd", "etcd"),
    ("kube-controller-manager", "controller-manager"),
    ("moto", "moto"),
    ("operator run", "operator"),
    ("worker run", "workers"),
)


def _cpu_of(stat: str) -> float:
    """CPU seconds (user + system) from the text of /proc/PID/stat, with those of its
    children that ended and were reaped (the operator's git and renders, kubectl's run)."""
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK


def cpu_seconds(pid: int) -> float:
    """CPU seconds one process has taken so far (0 when it is gone)."""
    try:
        return _cpu_of(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0


def _processes() -> dict[int, tuple[str, float]]:
    """Every process: (its part by command line, "other" if none; CPU seconds so far)."""
    found: dict[int, tuple[str, float]] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        seconds = _cpu_of(stat)
        pid = int(entry.name)
        part = "bench" if pid == me else next((p for k, p in PARTS if k in cmdline), "other")
        found[pid] = (part, seconds)
    return found


def _machine() -> tuple[float, float]:
    """(busy, all) CPU seconds of the machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK, sum(values) / CLOCK


@dataclass
class CpuMeter:
    """Start, then `stop()`: CPU seconds by part over the span (a process that ended within
    it counts in its parent's, once reaped; one not reaped is missed)."""

    _before: dict[int, tuple[str, float]] = field(default_factory=_processes)
    _machine_before: tuple[float, float] = field(default_factory=_machine)

    def stop(self) -> tuple[dict[str, float], float, float]:
        """(CPU seconds by part, machine busy seconds, machine capacity seconds)."""
        after, (busy, total) = _processes(), _machine()
        by_part: dict[str, float] = defaultdict(float)
        for pid, (part, seconds) in after.items():
            earlier = self._before.get(pid)
            by_part[part] += seconds - (earlier[1] if earlier and earlier[0] == part else 0.0)
        return dict(by_part), busy - self._machine_before[0], total - self._machine_before[1]


def summary(by_part: dict[str, float], busy: float, capacity: float) -> str:
    """One line: each part's CPU seconds, largest first, and the machine's share used."""
    parts = ", ".join(
        f"{name} {seconds:.0f}" for name, seconds in sorted(by_part.items(), key=lambda i: -i[1])
    )
    return f"{parts} (machine busy {busy:.0f} of {capacity:.0f} CPU-s, {busy / capacity:.0%})"
