"""The local platform `make up` runs, as production runs it on EKS, but for the machines:

- two embedded clusters, dev and prod, with kwok nodes (pods are scheduled and turn Ready; no
  container runs), each bootstrapped as `make bootstrap` does it (CRDs, the operator chart, the
  root Application) and then following git: a local bare "origin" seeded from this working
  tree (git's insteadOf points the GitHub URL in clusters/ at it);
- moto, with each environment's AWS side (`herd aws bootstrap`, names prefixed dev-/prod-);
- one operator per cluster, and the signup API, the email worker and the thumbnail worker
  against dev, as local processes, each under its own chart's ServiceAccount (a TokenRequest
  token), never the admin kubeconfig: a permission missing from a chart fails here as it
  would on EKS.

`.herd/env` is shell-safe: `set -a; . .herd/env` gives a shell everything the README shows.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from herd_core.constants import GROUP, VERSION
from herd_devkit.local import admin, bootstrap, identity, repos
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitops import (
    OPERATOR_NAMESPACE,
    OPERATOR_RELEASE,
    bootstrap_cluster,
    install_operator_chart,
    operator_installed,
    operator_kubeconfig,
    seed_origin,
    url_rewrites,
)
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port, wait_until
from herd_devkit.local.service import Service
from herd_devkit.local.tools import ToolsMissing, binary, helm_env
from herd_devkit.settings import Settings
from herd_devkit.stack import HERD, Stack
from herd_devkit.validate import ENVIRONMENTS

WEBHOOK_SECRET = "local-webhook-secret"  # only on loopback; real clusters take it from a Secret
# The ServiceAccount each program runs as: its chart's, named after its Helm release.
API_ACCOUNT, WORKER_ACCOUNT = "herd-api", "herd-workers"
SYNC_TIMEOUT = 300.0


@dataclass
class Platform:
    settings: Settings
    repo_root: Path

    @property
    def state(self) -> Path:
        return self.settings.state_dir.absolute()

    @cached_property
    def stack(self) -> Stack:
        """The local stack, detached: what `make up` starts outlives it."""
        return Stack(
            root=self.state, settings=self.settings, detached=True, repo_root=self.repo_root
        )

    def moto(self) -> MotoServer:
        return self.stack.moto_server()

    def cluster(self, env: str) -> ControlPlane:
        return self.stack.control_plane(env)

    def service(self, name: str) -> Service:
        return Service(name, self.state / "services")

    def services(self) -> list[Service]:
        return [
            *(self.service(f"operator-{env}") for env in ENVIRONMENTS),
            self.service("api"),
            self.service("worker"),
            self.service("thumbnails"),
        ]

    def local_admin(self) -> admin.LocalAdmin:
        """The admin page's sign-in that `up` seeded (local only)."""
        return admin.credentials(self.state)

    def origin(self) -> Repo:
        root = self.state / "origin"
        if (root / "origin.git" / "HEAD").exists():
            return Repo(origin=root / "origin.git", work=root / "work")
        return seed_origin(self.repo_root, root)

    def identity(self, env: str, account: str) -> Path:
        return self.state / "identities" / f"{env}-{account}.kubeconfig"

    def up(self, say: Callable[[str], None]) -> dict[str, str]:
        moto = self.stack.moto()
        out = moto.env(self.settings.aws_region)
        say(f"moto (AWS) at {moto.url}")
        origin = self.origin()
        out["HERD_ORIGIN_REPO"] = origin.url
        # Your own repositories (`herd app repo add`) beside the seeded origin.
        rewrites = {**repos.rewrites(self.state), **url_rewrites(origin)}
        out["HERD_GIT_URL_REWRITES"] = json.dumps(rewrites, sort_keys=True)
        say(f"origin repository {origin.origin} (dev and main)")
        resources: dict[str, bootstrap.Environment] = {}
        for env in ENVIRONMENTS:
            cp = self.stack.cluster(env)
            out[f"KUBECONFIG_{env.upper()}"] = str(cp.kubeconfig)
            aws = self.stack.aws(aws_name_prefix=f"{env}-", environment=env)
            resources[env] = bootstrap.bootstrap(aws)
            if env == "dev":  # the API runs against dev: its admin page needs an admin
                admin.seed(aws, resources[env].user_pool_id, self.state)
            operator = self.service(f"operator-{env}")
            webhook = free_port()
            # A changed map of repositories restarts the operators with it.
            against = {
                "server": cp.server,
                "moto": moto.url,
                "rewrites": out["HERD_GIT_URL_REWRITES"],
            }
            if not self._current(operator, against):
                # As `make bootstrap` on EKS: the operator chart gives the operator its identity,
                # once; from then on git keeps it.
                with self._api(cp.kubeconfig) as api:
                    installed = operator_installed(api)
                if not installed:
                    install_operator_chart(cp.kubeconfig, self.repo_root, env)
                with self._api(cp.kubeconfig) as api:
                    bootstrap_cluster(api, self.repo_root, env)
                    operator_kubeconfig(api, cp.kubeconfig, self.identity(env, OPERATOR_RELEASE))
                self._start(
                    operator.name,
                    ["operator", "run"],
                    env,
                    self.identity(env, OPERATOR_RELEASE),
                    moto,
                    resources[env],
                    out,
                    "HERD_HEALTH_PORT",
                    {
                        "HERD_METRICS_PORT": str(free_port()),
                        "HERD_WEBHOOK_PORT": str(webhook),
                        "HERD_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "HERD_STATE_DIR": str(self.state / f"operator-{env}"),
                        **helm_env(self.settings),
                        "HERD_PEERING": OPERATOR_RELEASE,
                        "HERD_APP_TICK": "2",
                        "HERD_APP_POLL_INTERVAL": "10",
                        "HERD_LOGIN_URL_TEMPLATE": "http://localhost/manager/?realm={slug}",
                    },
                )
                operator.record(webhook=webhook, issued=time.time(), **against)
            out[f"HERD_WEBHOOK_URL_{env.upper()}"] = (
                f"http://127.0.0.1:{operator.info().get('webhook', webhook)}/webhooks/github"
            )
            say(
                f"cluster {env} at {cp.server}; its operator follows branch "
                f"{'dev' if env == 'dev' else 'main'} as {OPERATOR_NAMESPACE}:{OPERATOR_RELEASE}"
            )
        dev = Path(out["KUBECONFIG_DEV"])
        api_service = self.service("api")
        api_port = int(str(api_service.info().get("port") or free_port()))
        out["HERD_API_URL"] = f"http://127.0.0.1:{api_port}"
        dev_cluster = {"server": self.cluster("dev").server, "moto": moto.url}
        if not self._current(api_service, dev_cluster):
            # The API's identity comes from git: dev's herd-api Application installs its chart.
            self._wait_synced(dev, API_ACCOUNT, say)
            self._account(dev, API_ACCOUNT)
            self._start(
                "api",
                ["api", "run"],
                "dev",
                self.identity("dev", API_ACCOUNT),
                moto,
                resources["dev"],
                out,
                "HERD_API_PORT",
                {
                    "HERD_API_PORT": str(api_port),
                    "HERD_PUBLIC_URL": out["HERD_API_URL"],
                    "HERD_JWKS_URL": f"{moto.url}/{resources['dev'].user_pool_id}"
                    "/.well-known/jwks.json",
                    # Email verification is on (the default): signups wait for their link.
                    "HERD_SIGNUP_TOKEN_KEY": admin.signup_token_key(self.state),
                },
            )
            api_service.record(port=api_port, issued=time.time(), **dev_cluster)
        say(f"signup API at {out['HERD_API_URL']} (against dev, as herd-system:{API_ACCOUNT})")
        if not self._current(self.service("worker"), dev_cluster):
            self._wait_synced(dev, WORKER_ACCOUNT, say)
            self._account(dev, WORKER_ACCOUNT)
            self._start(
                "worker",
                ["worker", "run"],
                "dev",
                self.identity("dev", WORKER_ACCOUNT),
                moto,
                resources["dev"],
                out,
                "HERD_WORKER_PORT",
                {"HERD_WORKER_WAIT_SECONDS": "2", "HERD_WORKER_MAX_SEND_RATE": "10"},
            )
            self.service("worker").record(issued=time.time(), **dev_cluster)
        say(f"email worker running (against dev, as herd-system:{WORKER_ACCOUNT})")
        if not self._current(self.service("thumbnails"), dev_cluster):
            self._account(dev, WORKER_ACCOUNT)
            self._start(
                "thumbnails",
                ["worker", "run", "--kind", "thumbnails"],
                "dev",
                self.identity("dev", WORKER_ACCOUNT),
                moto,
                resources["dev"],
                out,
                "HERD_WORKER_PORT",
                {"HERD_WORKER_WAIT_SECONDS": "2"},
            )
            self.service("thumbnails").record(issued=time.time(), **dev_cluster)
        say(f"thumbnail worker running (against dev, as herd-system:{WORKER_ACCOUNT})")
        self._wait_for_platform(dev, say)
        for env in ENVIRONMENTS:
            self._wait_healthy(Path(out[f"KUBECONFIG_{env.upper()}"]), env, say)
        self._write_env(out)
        return out

    # -- the shell's view: .herd/env, .herd/kubeconfig, .herd/bin ------------------------------
    def _write_env(self, out: dict[str, str]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        kubeconfig = identity.merged_kubeconfig(
            [Path(out[f"KUBECONFIG_{env.upper()}"]) for env in ENVIRONMENTS],
            "herd-dev",
            self.state / "kubeconfig",
        )
        bin_dir = self._bin()
        values = {
            **out,
            "KUBECONFIG": str(kubeconfig),
            "HERD_STATE_DIR": str(self.state),
        }
        if any("\n" in v for v in values.values()):
            raise ValueError("a value of .herd/env holds a newline")
        lines = [
            "# The local platform, for a shell: set -a; . .herd/env  (written by `make up`)",
            *(f"{key}={shlex.quote(value)}" for key, value in values.items()),
            # The pinned tools and `herd` first; $PATH expands when the file is sourced.
            f'PATH={shlex.quote(str(bin_dir))}:"$PATH"',
        ]
        (self.state / "env").write_text("\n".join(lines) + "\n")

    def _bin(self) -> Path:
        """.herd/bin: `herd`, and the pinned uv, kubectl and helm, as links."""
        bin_dir = self.state / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        links = {"herd": Path(HERD)}
        for tool in ("kubectl", "helm", "uv"):
            try:
                links[tool] = binary(tool, self.settings)
            except ToolsMissing:
                continue
        for name, target in links.items():
            link = bin_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        return bin_dir

    # -- internals ------------------------------------------------------------------------------
    def _current(self, service: Service, against: dict[str, str]) -> bool:
        """Whether `service` runs against this cluster and moto with a token not near its end.
        One that does not (a cluster or moto restarted under it, a token days old) is
        stopped, so that `make up` starts it afresh with a new identity."""
        if not service.running():
            return False
        info = service.info()
        issued = float(str(info.get("issued") or 0))
        if all(info.get(k) == v for k, v in against.items()) and (
            time.time() - issued < identity.TOKEN_SECONDS * 0.7
        ):
            return True
        service.stop()
        return False

    @staticmethod
    def _api(kubeconfig: Path) -> ApiClient:
        return Stack.client(kubeconfig)

    def _account(self, kubeconfig: Path, account: str) -> None:
        with self._api(kubeconfig) as api:
            self.stack.identity(
                api, kubeconfig, OPERATOR_NAMESPACE, account, self.identity("dev", account)
            )

    def _start(
        self,
        name: str,
        args: list[str],
        env: str,
        kubeconfig: Path,
        moto: MotoServer,
        resources: bootstrap.Environment,
        out: dict[str, str],
        port_var: str,
        extra: dict[str, str],
    ) -> None:
        port = int(extra.get(port_var) or free_port())
        environ = {
            **self.process_env(env, moto, kubeconfig, resources),
            "HERD_GIT_URL_REWRITES": out["HERD_GIT_URL_REWRITES"],
            **extra,
        }
        self.stack.program(args, port_var, environ, name=name, port=port)

    def _applications(self, kubeconfig: Path) -> list[dict[str, Any]]:
        with self._api(kubeconfig) as api:
            found: dict[str, Any] = client.CustomObjectsApi(api).list_cluster_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, "applications"
            )
        return list(found["items"])

    def _wait_synced(self, kubeconfig: Path, app: str, say: Callable[[str], None]) -> None:
        """Until git has brought `app` (its chart, ServiceAccount and RBAC) into the cluster."""

        def synced() -> bool:
            for item in self._applications(kubeconfig):
                status = item.get("status") or {}
                if item["metadata"]["name"] == app:
                    return bool((status.get("sync") or {}).get("status") == "Synced")
            return False

        if not wait_until(synced, SYNC_TIMEOUT, interval=1):
            raise RuntimeError(
                f"dev did not sync Application {app} in time; see "
                f"{self.service('operator-dev').log} and `herd app status`"
            )

    def _wait_healthy(self, kubeconfig: Path, env: str, say: Callable[[str], None]) -> None:
        """Until every Application of `env` is Synced and Healthy (kwok runs the pods)."""
        last: list[str] = []

        def healthy() -> bool:
            nonlocal last
            last = []
            for item in self._applications(kubeconfig):
                status = item.get("status") or {}
                sync = (status.get("sync") or {}).get("status")
                health = (status.get("health") or {}).get("status")
                if sync != "Synced" or health != "Healthy":
                    last.append(f"{item['metadata']['name']}: {sync}/{health}")
            return not last

        if not wait_until(healthy, SYNC_TIMEOUT, interval=1):
            raise RuntimeError(
                f"{env}: Applications not Synced and Healthy in time ({', '.join(last)}); see "
                f"{self.service(f'operator-{env}').log}"
            )
        say(f"{env}: every Application Synced and Healthy")

    def _wait_for_platform(self, kubeconfig: Path, say: Callable[[str], None]) -> None:
        """Until dev has synced its apps and the email templates are Ready: signups work
        (the verification email's first, then the welcome email's)."""
        with self._api(kubeconfig) as api:
            custom = client.CustomObjectsApi(api)

            def ready() -> bool:
                for name in ("signup-verification", "welcome"):
                    try:
                        tpl = custom.get_namespaced_custom_object(
                            GROUP, VERSION, "tenants", "sestemplates", name
                        )
                    except client.exceptions.ApiException:
                        return False
                    conds = (tpl.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
                    if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                        return False
                return True

            if not wait_until(ready, SYNC_TIMEOUT, interval=1):
                raise RuntimeError(
                    "dev did not sync its platform app in time; see "
                    f"{self.service('operator-dev').log}"
                )
        say("dev synced from git: tenants namespace and the email templates Ready")

    def down(self, say: Callable[[str], None]) -> None:
        """Stop everything, each part even when another would not stop; then say which."""
        failed: list[str] = []

        def attempt(what: str, stop: Callable[[], None]) -> None:
            try:
                stop()
                say(f"{what} stopped")
            except RuntimeError as err:
                failed.append(f"{what}: {err}")

        for service in self.services():
            attempt(service.name, service.stop)
        clusters = self.state / "clusters"
        for folder in sorted(p for p in clusters.glob("*") if p.is_dir()):
            attempt(f"cluster {folder.name}", self.cluster(folder.name).stop)
        attempt("moto", self.moto().stop)
        if failed:
            raise RuntimeError("; ".join(failed))

    def process_env(
        self, env: str, moto: MotoServer, kubeconfig: Path, resources: bootstrap.Environment
    ) -> dict[str, str]:
        # As the Stack makes a program's environment (none of the shell's AWS, Kubernetes or
        # HERD_ settings), plus the environment's name and prefix.
        return self.stack.program_env(
            kubeconfig,
            resources,
            HERD_ENVIRONMENT=env,
            HERD_AWS_NAME_PREFIX=f"{env}-",
            HERD_STATE_DIR=str(self.state),
            HERD_TENANTS_NAMESPACE="tenants",
            HERD_LISTEN_HOST="127.0.0.1",
        )


def read_env(path: Path) -> dict[str, str]:
    """What `Platform._write_env` wrote, parsed as a shell reads it (PATH left out)."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if not sep or key.startswith("#") or key == "PATH":
            continue
        words = shlex.split(value)
        out[key] = words[0] if words else ""
    return out
