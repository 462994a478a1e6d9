"""A local process (moto, operator, API, worker) with a state file and a health URL.

Detached processes outlive the command that started them (`make up`); tied ones die with
their parent (tests)."""

from __future__ import annotations

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


@dataclass
class Service:
    name: str
    root: Path
    tie_to_parent: bool = False
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def state_file(self) -> Path:
        return self.root / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.root.parent / "logs" / f"{self.name}.log"

    def info(self) -> dict[str, object]:
        return read_state(self.state_file)[1]

    def pids(self) -> list[int]:
        return [r.pid for r in read_state(self.state_file)[0]]

    def running(self) -> bool:
        records, extra = read_state(self.state_file)
        return bool(records) and all(alive(r) for r in records) and _ok(str(extra.get("health")))

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        health: str,
        timeout: float = 90,
        **extra: object,
    ) -> None:
        """Start unless already healthy; wait until `health` answers 200."""
        if self.running():
            return
        self.stop()
        popen, record = spawn(self.name, args, self.log, env=env, tie_to_parent=self.tie_to_parent)
        self._popen = popen
        write_state(self.state_file, [record], health=health, **extra)
        if not wait_until(lambda: popen.poll() is not None or _ok(health), timeout) or (
            popen.poll() is not None
        ):
            self.stop()
            raise RuntimeError(f"{self.name} did not become healthy; see {self.log}")

    def record(self, **extra: object) -> None:
        """Keep `extra` (e.g. a port) in the state file, beside what `start` wrote."""
        records, current = read_state(self.state_file)
        write_state(self.state_file, records, **{**current, **extra})

    def stop(self) -> None:
        records = read_state(self.state_file)[0]
        stop_all(records, {r.pid: self._popen for r in records if self._popen is not None})
        self._popen = None
        self.state_file.unlink(missing_ok=True)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except (httpx.HTTPError, ValueError):
        return False
