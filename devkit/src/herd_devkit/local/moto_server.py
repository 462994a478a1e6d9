"""moto in server mode: a real HTTP endpoint on loopback that boto3 reaches by endpoint_url."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from herd_devkit.local.process import ProcessRecord, free_port, read_state
from herd_devkit.local.service import Service
from herd_devkit.settings import Settings

READY_TIMEOUT = 60.0
MODULE = "herd_devkit.local.moto_serial"  # moto.server, one request at a time


def without_aws(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less the AWS variables that name an account, a region or an endpoint (the
    machine's CA bundle stays)."""
    return {k: v for k, v in environ.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}


# moto accepts any keys; these are what the local platform hands its programs and writes to
# .herd/env, so nothing depends on credentials in the user's shell (and none leak to moto).
LOCAL_KEY_ID, LOCAL_SECRET = "local", "local"


@dataclass
class MotoServer:
    root: Path
    port: int | None = None
    tie_to_parent: bool = True
    # More of the server's environment: its quotas (HERD_AWS_QUOTAS, HERD_LOCAL_SES_SANDBOX,
    # HERD_LOCAL_AWS_QUOTAS), over the parent's.
    server_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._service = Service("moto", self.root, tie_to_parent=self.tie_to_parent)

    @property
    def state_file(self) -> Path:
        return self._service.state_file

    @property
    def url(self) -> str:
        return str(self._service.info()["url"])

    def running(self) -> bool:
        return self._service.running()

    def env(self, region: str) -> dict[str, str]:
        """The standard AWS variables of a program that talks to this moto."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": LOCAL_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET,
            "AWS_REGION": region,
        }

    def settings(self, base: Settings, **update: object) -> Settings:
        """`base` pointed at this moto with the local keys (for in-process AWS calls)."""
        return base.model_copy(
            update={
                "aws_endpoint_url": self.url,
                "aws_access_key_id": LOCAL_KEY_ID,
                "aws_secret_access_key": SecretStr(LOCAL_SECRET),
                **update,
            }
        )

    def start(self) -> MotoServer:
        last: Exception | None = None
        for _ in range(3):  # the port may be taken between picking and binding
            port = self.port or free_port()
            url = f"http://127.0.0.1:{port}"
            try:
                self._service.start(
                    [sys.executable, "-m", MODULE, "-H", "127.0.0.1", "-p", str(port)],
                    # No AWS credentials of the shell reach moto (it would record them).
                    {**without_aws(os.environ), **self.server_env},
                    health=f"{url}/moto-api/data.json",
                    timeout=READY_TIMEOUT,
                    url=url,
                )
                return self
            except RuntimeError as err:
                last = err
        raise RuntimeError(f"moto server did not start: {last}")

    def stop(self) -> None:
        self._service.stop()

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
