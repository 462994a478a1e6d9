"""The local platform `make up` runs, as local processes (there is no kubelet here):

- two embedded clusters, dev and prod, each following its root Application from clusters/,
  fed by a local bare "origin" repository seeded from this working tree (git's insteadOf
  points the GitHub URL in clusters/ at it);
- moto, with each environment's AWS side (`herd aws bootstrap`, names prefixed dev-/prod-);
- one operator per cluster, and the signup API and the email worker against dev.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernetes import config

from herd_operator.gitops.validate import ENVIRONMENTS
from herd_operator.local import bootstrap
from herd_operator.local.controlplane import ControlPlane
from herd_operator.local.gitops import bootstrap_cluster, seed_origin, url_rewrites
from herd_operator.local.gitrepo import Repo
from herd_operator.local.moto_server import MotoServer
from herd_operator.local.process import free_port, wait_until
from herd_operator.local.service import Service
from herd_operator.settings import Settings

HERD = [sys.executable, "-m", "herd_operator"]
WEBHOOK_SECRET = "local-webhook-secret"  # only on loopback; real clusters take it from a Secret


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

    def service(self, name: str) -> Service:
        return Service(name, self.state / "services")

    def services(self) -> list[Service]:
        return [
            *(self.service(f"operator-{env}") for env in ENVIRONMENTS),
            self.service("api"),
            self.service("worker"),
        ]

    def origin(self) -> Repo:
        root = self.state / "origin"
        if (root / "origin.git" / "HEAD").exists():
            return Repo(origin=root / "origin.git", work=root / "work")
        return seed_origin(self.repo_root, root)

    def up(self, say: Callable[[str], None]) -> dict[str, str]:
        out: dict[str, str] = {}
        moto = self.moto().start()
        out["AWS_ENDPOINT_URL"] = moto.url
        say(f"moto (AWS) at {moto.url}")
        origin = self.origin()
        out["HERD_ORIGIN_REPO"] = origin.url
        out["HERD_GIT_URL_REWRITES"] = json.dumps(url_rewrites(origin))
        say(f"origin repository {origin.origin} (dev and main)")
        resources: dict[str, bootstrap.Environment] = {}
        for env in ENVIRONMENTS:
            cp = self.cluster(env).start()
            out[f"KUBECONFIG_{env.upper()}"] = str(cp.kubeconfig)
            resources[env] = bootstrap.bootstrap(self.aws_settings(env, moto.url))
            with config.new_client_from_config(config_file=str(cp.kubeconfig)) as api:  # type: ignore[no-untyped-call]
                bootstrap_cluster(api, self.repo_root, env)
            webhook = free_port()
            self._start(
                f"operator-{env}",
                [*HERD, "operator", "run"],
                env,
                cp.kubeconfig,
                moto.url,
                resources[env],
                out,
                "HERD_HEALTH_PORT",
                "/healthz",
                {
                    "HERD_METRICS_PORT": str(free_port()),
                    "HERD_WEBHOOK_PORT": str(webhook),
                    "HERD_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "HERD_STATE_DIR": str(self.state / f"operator-{env}"),
                    "HERD_APP_TICK": "2",
                    "HERD_APP_POLL_INTERVAL": "10",
                    # No kubelet: Deployments never turn available, so waves do not wait.
                    "HERD_WAVE_HEALTH_GATE": "false",
                    "HERD_LOGIN_URL_TEMPLATE": "http://localhost/manager/?realm={slug}",
                },
            )
            out[f"HERD_WEBHOOK_URL_{env.upper()}"] = f"http://127.0.0.1:{webhook}/webhooks/github"
            say(
                f"cluster {env} at {cp.server}; its operator follows branch "
                f"{'dev' if env == 'dev' else 'main'}"
            )
        dev = Path(out["KUBECONFIG_DEV"])
        api_port = free_port()
        out["HERD_API_URL"] = f"http://127.0.0.1:{api_port}"
        self._start(
            "api",
            [*HERD, "api", "run", "--port", str(api_port)],
            "dev",
            dev,
            moto.url,
            resources["dev"],
            out,
            "HERD_API_PORT",
            "/healthz",
            {
                "HERD_API_PORT": str(api_port),
                "HERD_PUBLIC_URL": out["HERD_API_URL"],
                "HERD_JWKS_URL": f"{moto.url}/{resources['dev'].user_pool_id}"
                "/.well-known/jwks.json",
            },
        )
        say(f"signup API at {out['HERD_API_URL']} (against dev)")
        self._start(
            "worker",
            [*HERD, "worker", "run"],
            "dev",
            dev,
            moto.url,
            resources["dev"],
            out,
            "HERD_WORKER_PORT",
            "/healthz",
            {"HERD_WORKER_WAIT_SECONDS": "2", "HERD_WORKER_MAX_SEND_RATE": "10"},
        )
        say("email worker running (against dev)")
        self._wait_for_platform(dev, say)
        (self.state / "env").write_text("".join(f"{k}={v}\n" for k, v in out.items()))
        return out

    def _start(
        self,
        name: str,
        args: list[str],
        env: str,
        kubeconfig: Path,
        endpoint: str,
        resources: bootstrap.Environment,
        out: dict[str, str],
        port_var: str,
        path: str,
        extra: dict[str, str],
    ) -> None:
        port = extra.get(port_var) or str(free_port())
        environ = {
            **self.process_env(env, endpoint, kubeconfig, resources),
            "HERD_GIT_URL_REWRITES": out["HERD_GIT_URL_REWRITES"],
            **extra,
            port_var: port,
        }
        self.service(name).start(args, environ, health=f"http://127.0.0.1:{port}{path}")

    def _wait_for_platform(self, kubeconfig: Path, say: Callable[[str], None]) -> None:
        """Until dev has synced its apps and the welcome template is Ready: signups work."""
        from kubernetes import client

        from herd_operator.constants import GROUP, VERSION

        with config.new_client_from_config(config_file=str(kubeconfig)) as api:  # type: ignore[no-untyped-call]
            custom = client.CustomObjectsApi(api)

            def ready() -> bool:
                try:
                    tpl = custom.get_namespaced_custom_object(
                        GROUP, VERSION, "tenants", "sestemplates", "welcome"
                    )
                except client.exceptions.ApiException:
                    return False
                conds = (tpl.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
                return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

            if not wait_until(ready, 240, interval=1):
                raise RuntimeError(
                    "dev did not sync its platform app in time; see "
                    f"{self.service('operator-dev').log}"
                )
        say("dev synced from git: tenants namespace and welcome email template Ready")

    def down(self, say: Callable[[str], None]) -> None:
        for service in self.services():
            service.stop()
        say("operators, API and worker stopped")
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
            "HERD_TENANTS_NAMESPACE": "tenants",
            **resources.env(),
        }
