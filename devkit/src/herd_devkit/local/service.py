"""A local process (moto, the operator, the API, the worker) with a log, a health URL and a
state file: the one process wrapper of `make up`, the tests and the benches.

Detached processes outlive the command that started them (`make up`: found again through
their state file); tied ones die with their parent (tests, benches). Either way a process
gets its own process group, and `stop` ends the whole group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from herd_devkit.local.process import (
    alive,
    read_state,
    spawn,
    stop_all,
    wait_until,
    write_state,
)

LOG_TAIL = 3000  # characters of its log a process that would not start is reported with


class NotHealthy(RuntimeError):
    """A process exited, or did not answer its health URL in time."""


@dataclass
class Service:
    name: str
    root: Path  # where its state file lives
    tie_to_parent: bool = False
    log_file: Path | None = None  # default: <root>/../logs/<name>.log
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def state_file(self) -> Path:
        return self.root / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.log_file or self.root.parent / "logs" / f"{self.name}.log"

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The process, when this object started it (not when found through its state)."""
        return self._popen

    def info(self) -> dict[str, object]:
        return read_state(self.state_file)[1]

    def pids(self) -> list[int]:
        return [r.pid for r in read_state(self.state_file)[0]]

    def alive(self) -> bool:
        """Whether its process runs (healthy or not)."""
        if self._popen is not None:
            return self._popen.poll() is None
        records = read_state(self.state_file)[0]
        return bool(records) and all(alive(r) for r in records)

    def running(self) -> bool:
        """Alive and answering its health URL."""
        return self.alive() and _ok(str(self.info().get("health")))

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        health: str,
        timeout: float = 90,
        **extra: object,
    ) -> Service:
        """Start unless already healthy; wait until `health` answers 200. NotHealthy, with
        the end of its log, when it exits first or does not answer in time."""
        if self.running():
            return self
        self.stop()
        popen, record = spawn(self.name, args, self.log, env=env, tie_to_parent=self.tie_to_parent)
        self._popen = popen
        write_state(self.state_file, [record], health=health, **extra)
        if not wait_until(lambda: popen.poll() is not None or _ok(health), timeout) or (
            popen.poll() is not None
        ):
            exited = popen.poll()
            self.stop()
            what = f"exited with {exited}" if exited is not None else "did not become healthy"
            raise NotHealthy(f"{self.name} {what}; see {self.log}:\n{self.log_text()[-LOG_TAIL:]}")
        return self

    def record(self, **extra: object) -> None:
        """Keep `extra` (e.g. a port) in the state file, beside what `start` wrote."""
        records, current = read_state(self.state_file)
        write_state(self.state_file, records, **{**current, **extra})

    def kill(self) -> None:
        """SIGKILL the process itself: no cleanup, no finalizers, as a node failure or an OOM
        kill would end it. (Its group is left to `stop`.)"""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGKILL)
            self._popen.wait(30)

    def stop(self) -> None:
        """SIGTERM its process group, SIGKILL what is left after the grace period."""
        records = read_state(self.state_file)[0]
        stop_all(records, {r.pid: self._popen for r in records if self._popen is not None})
        self._popen = None
        self.state_file.unlink(missing_ok=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except (httpx.HTTPError, ValueError):
        return False
