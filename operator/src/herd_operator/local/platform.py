"""The local platform `make up` runs: two embedded clusters (dev, prod), moto with each
environment's AWS side, our CRDs, and one operator per cluster, all as local processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernetes import config

from herd_operator.local import bootstrap, crds
from herd_operator.local.controlplane import ControlPlane
from herd_operator.local.moto_server import MotoServer
from herd_operator.local.process import free_port
from herd_operator.local.service import Service
from herd_operator.settings import Settings

ENVIRONMENTS = ("dev", "prod")
HERD = [sys.executable, "-m", "herd_operator"]


@dataclass
class Platform:
    settings: Settings
    repo_root: Path

    @property
    def state(self) -> Path:
        return self.settings.state_dir.absolute()

    def moto(self) -> MotoServer:
        return MotoServer(root=self.state / "moto", tie_to_parent=False)

    def cluster(self, env: str) -> ControlPlane:
        return ControlPlane.named(
            env, self.settings.model_copy(update={"state_dir": self.state}), tie_to_parent=False
        )

    def operator(self, env: str) -> Service:
        return Service(f"operator-{env}", self.state / "services")

    def up(self, say: Callable[[str], None]) -> dict[str, str]:
        out: dict[str, str] = {}
        moto = self.moto().start()
        out["AWS_ENDPOINT_URL"] = moto.url
        say(f"moto (AWS) at {moto.url}")
        for env in ENVIRONMENTS:
            cp = self.cluster(env).start()
            out[f"KUBECONFIG_{env.upper()}"] = str(cp.kubeconfig)
            say(f"cluster {env} at {cp.server}")
            aws_env = self.aws_settings(env, moto.url)
            resources = bootstrap.bootstrap(aws_env)
            say(
                f"AWS for {env}: user pool {resources.user_pool_id}, queue "
                f"{resources.email_queue_url.rsplit('/', 1)[-1]}"
            )
            with config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(cp.kubeconfig)
            ) as api:
                crds.install(api, self.repo_root / "charts" / "herd-operator" / "crds")
            health = free_port()
            self.operator(env).start(
                [*HERD, "operator", "run"],
                self.process_env(env, moto.url, cp.kubeconfig, resources)
                | {"HERD_HEALTH_PORT": str(health), "HERD_METRICS_PORT": str(free_port())},
                health=f"http://127.0.0.1:{health}/healthz",
            )
            say(f"operator for {env} running (log {self.operator(env).log})")
        env_file = self.state / "env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in out.items()))
        return out

    def down(self, say: Callable[[str], None]) -> None:
        for env in ENVIRONMENTS:
            self.operator(env).stop()
        clusters = self.state / "clusters"
        for folder in sorted(p for p in clusters.glob("*") if p.is_dir()):
            self.cluster(folder.name).stop()
            say(f"cluster {folder.name} stopped")
        self.moto().stop()
        say("moto stopped")

    def aws_settings(self, env: str, endpoint: str) -> Settings:
        return self.settings.model_copy(
            update={"aws_endpoint_url": endpoint, "aws_name_prefix": f"{env}-", "environment": env}
        )

    def process_env(
        self, env: str, endpoint: str, kubeconfig: Path, resources: bootstrap.Environment
    ) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_REGION": self.settings.aws_region,
            "HERD_ENVIRONMENT": env,
            "HERD_AWS_NAME_PREFIX": f"{env}-",
            "HERD_STATE_DIR": str(self.state),
            **resources.env(),
        }
