"""The one builder of Herd's local stack, for `make up`, the tests and the benches: moto (with
an environment's AWS side, as `herd aws bootstrap` makes it), embedded control planes, our
CRDs, the charts that give each program its ServiceAccount, and the programs themselves
(`herd operator|api|worker run`) as local processes under those ServiceAccounts' tokens.

Each user composes the steps it needs (the tests lazily, fixture by fixture; `make up` for
two clusters, keeping what already runs; a bench all at once) and `stop` ends, in reverse,
whatever this Stack started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import config
from kubernetes.client import ApiClient

from herd_devkit.local import bootstrap, crds, identity
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.moto_server import MotoServer, without_aws
from herd_devkit.local.process import free_port
from herd_devkit.local.service import Service
from herd_devkit.local.tools import binary, helm_env
from herd_devkit.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
# The `herd` command of this environment (herd_core's entry point loads every sub-command).
HERD = str(Path(sys.executable).parent / "herd")


def helm_install(
    kubeconfig: Path,
    repo_root: Path,
    release: str,
    chart: str,
    namespace: str,
    values: Sequence[str] = (),
    set_values: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> None:
    """`helm upgrade --install` of a chart of `repo_root` (paths relative to it) into the
    cluster of `kubeconfig`; RuntimeError with helm's words when it fails."""
    args = [
        str(binary("helm", settings)),
        "upgrade",
        "--install",
        release,
        chart,
        "--namespace",
        namespace,
        "--create-namespace",
        "--kubeconfig",
        str(kubeconfig),
    ]
    for path in values:
        args += ["-f", path]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    result = subprocess.run(args, cwd=repo_root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"helm: {result.stderr.strip()}")


@dataclass(kw_only=True)
class Program:
    """`herd <args>` as a local process, serving /healthz on the port it gets in
    `port_variable`: started (and waited for), SIGKILLed and restarted by tests."""

    args: tuple[str, ...]
    port_variable: str
    env: dict[str, str]
    log: Path
    health_port: int = field(default_factory=free_port)
    name: str = ""  # default: the sub-command; names its state file beside the log
    detached: bool = False  # outlives this Python process (`make up`)
    state_dir: Path | None = None  # where its state file lives; default: the log's folder

    def __post_init__(self) -> None:
        self.service = Service(
            self.name or self.args[0],
            self.state_dir or self.log.parent,
            tie_to_parent=not self.detached,
            log_file=self.log,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        return self.service.popen

    def start(self, timeout: float = 90, **record: object) -> Program:
        env = {**helm_env(), **self.env, self.port_variable: str(self.health_port)}
        self.service.start(
            [HERD, *self.args], env, health=f"{self.url}/healthz", timeout=timeout, **record
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, as a node failure or OOM would."""
        self.service.kill()

    def stop(self) -> None:
        self.service.stop()

    def running(self) -> bool:
        """Whether its process runs (healthy or not: a test may have just started it)."""
        return self.service.alive()

    def log_text(self) -> str:
        return self.service.log_text()


@dataclass
class Stack:
    root: Path  # state of what it starts: clusters/, moto/, services/, logs/, identities/
    settings: Settings
    detached: bool = False  # processes outlive this Python process (`make up`)
    repo_root: Path = REPO_ROOT
    _moto: MotoServer | None = field(default=None, repr=False)
    _clusters: dict[str, ControlPlane] = field(default_factory=dict, repr=False)
    _programs: list[Program | Service] = field(default_factory=list, repr=False)

    # -- AWS ------------------------------------------------------------------------------
    def moto_server(self) -> MotoServer:
        """moto, as this Stack keeps it (not started)."""
        if self._moto is None:
            self._moto = MotoServer(root=self.root / "moto", tie_to_parent=not self.detached)
        return self._moto

    def moto(self) -> MotoServer:
        """moto, started (kept when it already runs)."""
        server = self.moto_server()
        if not server.running():
            server.start()
        return server

    def aws(self, **update: object) -> Settings:
        """Settings for in-process AWS calls: straight to moto, with its local keys."""
        return self.moto().settings(self.settings, **update)

    def bootstrap_aws(self, **update: object) -> bootstrap.Environment:
        """An environment's AWS side, as `herd aws bootstrap` makes it (idempotent); `update`
        e.g. aws_name_prefix="dev-"."""
        return bootstrap.bootstrap(self.aws(**update))

    # -- Kubernetes -------------------------------------------------------------------------
    def control_plane(self, name: str) -> ControlPlane:
        """An embedded cluster under root/clusters/<name> (not started)."""
        if name not in self._clusters:
            self._clusters[name] = ControlPlane.named(
                name,
                self.settings.model_copy(update={"state_dir": self.root}),
                tie_to_parent=not self.detached,
            )
        return self._clusters[name]

    def cluster(self, name: str) -> ControlPlane:
        """An embedded cluster, started (kept when it already runs)."""
        return self.control_plane(name).start()

    @staticmethod
    def client(kubeconfig: Path) -> ApiClient:
        return config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call, no-any-return]

    def install_crds(self, api: ApiClient) -> list[str]:
        """Our CRDs from the operator chart's crds/, their one source, as `make up` does."""
        return crds.install(api, self.repo_root / "charts" / "herd-operator" / "crds")

    def install_chart(
        self,
        kubeconfig: Path,
        release: str,
        chart: str,
        namespace: str,
        values: Sequence[str] = (),
        set_values: Mapping[str, str] | None = None,
    ) -> None:
        """`helm upgrade --install` a chart of this repository (paths relative to it)."""
        helm_install(
            kubeconfig, self.repo_root, release, chart, namespace, values, set_values, self.settings
        )

    def identity(
        self, api: ApiClient, kubeconfig: Path, namespace: str, account: str, dest: Path
    ) -> Path:
        """A kubeconfig at `dest` with a TokenRequest token of ServiceAccount
        namespace/account: a program run with it is judged by its chart's RBAC."""
        return identity.service_account_kubeconfig(api, kubeconfig, namespace, account, dest)

    def chart_identity(
        self,
        api: ApiClient,
        kubeconfig: Path,
        chart: str,
        dest: Path,
        set_values: Mapping[str, str] | None = None,
        namespace: str = "herd-system",
    ) -> Path:
        """`chart` (herd-operator, herd-api, herd-workers) installed with its CI values, and
        a kubeconfig at `dest` for its ServiceAccount: its program runs as on EKS."""
        self.install_chart(
            kubeconfig,
            chart,
            f"charts/{chart}",
            namespace,
            values=[f"charts/{chart}/ci/dev-values.yaml"],
            set_values={"fullnameOverride": chart, **(set_values or {})},
        )
        return self.identity(api, kubeconfig, namespace, chart, dest)

    # -- programs ---------------------------------------------------------------------------
    def program_env(
        self,
        kubeconfig: Path,
        resources: bootstrap.Environment | None,
        endpoint: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        """A program's environment: the shell's, less its AWS identity, Kubernetes and HERD_
        settings (a program gets moto's keys and its own identity; the machine's CA bundle
        stays); the environment's AWS names and `endpoint` (default: moto) for every AWS
        call. Without `resources`, no AWS at all."""
        inherited = {
            k: v
            for k, v in without_aws(os.environ).items()
            if not k.startswith("HERD_") and k != "KUBECONFIG"
        }
        env = {**inherited, "KUBECONFIG": str(kubeconfig)}
        if resources is not None:
            env |= self.moto_server().env(self.settings.aws_region) | resources.env()
            if endpoint:
                env["AWS_ENDPOINT_URL"] = endpoint
        return env | extra

    def program(
        self,
        args: Sequence[str],
        port_variable: str,
        env: Mapping[str, str],
        name: str = "",
        port: int | None = None,
        timeout: float = 90,
        **record: object,
    ) -> Program:
        """Start `herd <args>` (logs in root/logs, state in root/services) and wait until
        its /healthz answers; stopped with the Stack."""
        name = name or args[0]
        program = Program(
            args=tuple(args),
            port_variable=port_variable,
            env=dict(env),
            log=self.root / "logs" / f"{name}.log",
            health_port=port or free_port(),
            name=name,
            detached=self.detached,
            state_dir=self.root / "services",
        )
        self._programs.append(program)
        return program.start(timeout=timeout, **record)

    def stop(self) -> None:
        """Stop, in reverse, what this Stack started: programs, clusters, moto."""
        failed: list[str] = []
        for part in [*reversed(self._programs), *self._clusters.values()]:
            try:
                part.stop()
            except RuntimeError as err:
                failed.append(str(err))
        self._programs.clear()
        if self._moto is not None:
            try:
                self._moto.stop()
            except RuntimeError as err:
                failed.append(str(err))
        if failed:
            raise RuntimeError("; ".join(failed))
