"""What the bench scripts share."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import config
from kubernetes.client import ApiClient

from herd_core import aws
from herd_core.emailjobs import EmailJob, enqueue
from herd_devkit.local import bootstrap, crds
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port
from herd_devkit.local.service import Service
from herd_devkit.local.tools import helm_env
from herd_devkit.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
HERD = [sys.executable, "-m", "herd_core"]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


@dataclass
class Stack:
    """An embedded control plane, moto with an environment's AWS side, Herd's CRDs, and the
    Herd processes a bench starts on top (stopped with the stack)."""

    root: Path
    plane: ControlPlane
    moto: MotoServer
    aws: Settings  # for the bench's own AWS calls
    resources: bootstrap.Environment
    api: ApiClient
    env: dict[str, str]  # for the processes: kubeconfig, AWS endpoint, queue, pool, ...
    services: list[Service] = field(default_factory=list)

    def run(
        self, command: list[str], port_variable: str, name: str | None = None, **env: str
    ) -> str:
        """Start `herd <command>` with a free port in `port_variable`; its base URL. `name`
        (default: the command) must differ between processes of the same command."""
        port = free_port()
        service = Service(name or command[0], self.root / "services")
        self.services.append(service)
        service.start(
            [*HERD, *command],
            helm_env() | self.env | env | {port_variable: str(port)},
            health=f"http://127.0.0.1:{port}/healthz",
        )
        return f"http://127.0.0.1:{port}"

    def queue_emails(self, count: int, prefix: str) -> None:
        """`count` email jobs of a `bench` SES template on the environment's queue."""
        aws.client("ses", self.aws).create_template(
            Template={"TemplateName": "bench", "SubjectPart": "Hi {{n}}", "TextPart": "Hi {{n}}"}
        )
        sqs = aws.client("sqs", self.aws)
        for i in range(count):
            job = EmailJob(
                idempotency_key=f"{prefix}-{i}",
                template="bench",
                to=f"u{i}@example.com",
                data={"n": i},
            )
            enqueue(sqs, self.resources.email_queue_url, job)


@contextmanager
def stack(prefix: str) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    settings = get_settings().model_copy(update={"state_dir": root})
    plane = ControlPlane.named("bench", settings=settings)
    moto = MotoServer(root=root / "moto")
    services: list[Service] = []
    try:
        plane.start()
        moto.start()
        aws = moto.settings(settings)
        resources = bootstrap.bootstrap(aws)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        crds.install(api, ROOT / "charts" / "herd-operator" / "crds")
        env = {
            **os.environ,
            **resources.env(),
            "KUBECONFIG": str(plane.kubeconfig),
            **moto.env(settings.aws_region),
        }
        s = Stack(root, plane, moto, aws, resources, api, env, services)
        yield s
    finally:
        for service in services:
            service.stop()
        moto.stop()
        plane.stop()
