"""moto in server mode: a real HTTP endpoint on loopback that boto3 reaches by endpoint_url."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from herd_operator.local.process import (
    ProcessRecord,
    alive,
    free_port,
    read_state,
    spawn,
    stop,
    wait_until,
    write_state,
)

READY_TIMEOUT = 60.0


@dataclass
class MotoServer:
    root: Path
    port: int | None = None
    tie_to_parent: bool = True
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def url(self) -> str:
        _, extra = read_state(self.state_file)
        return str(extra["url"])

    def running(self) -> bool:
        records, extra = read_state(self.state_file)
        return (
            bool(records)
            and all(alive(r) for r in records)
            and _ok(f"{extra['url']}/moto-api/data.json")
        )

    def start(self) -> MotoServer:
        if self.running():
            return self
        self.stop()
        for _ in range(3):  # the port may be taken between picking and binding
            if self._start_once(self.port or free_port()):
                return self
            self.stop()
        raise RuntimeError(f"moto server did not start; see {self.root / 'moto.log'}")

    def _start_once(self, port: int) -> bool:
        url = f"http://127.0.0.1:{port}"
        popen, record = spawn(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            self.root / "moto.log",
            tie_to_parent=self.tie_to_parent,
        )
        self._popen = popen
        write_state(self.state_file, [record], url=url)
        wait_until(
            lambda: popen.poll() is not None or _ok(f"{url}/moto-api/data.json"), READY_TIMEOUT
        )
        return popen.poll() is None and _ok(f"{url}/moto-api/data.json")

    def stop(self) -> None:
        for record in read_state(self.state_file)[0]:
            stop(record, self._popen)
        self._popen = None
        if self.state_file.exists():
            self.state_file.unlink()

    def processes(self) -> list[ProcessRecord]:
        return read_state(self.state_file)[0]

    # -- moto's own API -------------------------------------------------------------------
    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def data(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/moto-api/data.json", timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
