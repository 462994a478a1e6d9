"""A real Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager,
and kube-scheduler + kwok so that pods are scheduled onto fake nodes and turn Ready.

Started the way controller-runtime's envtest does it (see ../shared/docs/control-plane.md), with
the controller-manager added so garbage collection and namespace deletion work. kwok plays the
kubelet of a few fake nodes (pods get an IP and turn Ready, Jobs complete; no container runs)
and the cloud's load balancers (Services of type LoadBalancer and Ingresses get an address).
Volumes come from the controller-manager's host-path provisioner behind a default StorageClass
named like EKS's (`gp3`). Several named clusters can run at once; each lives in its own folder:

    <state_dir>/clusters/<name>/{kubeconfig, state.json, pki/, etcd/, logs/}
"""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from herd_devkit.local import certs, tools
from herd_devkit.local.process import (
    ProcessRecord,
    alive,
    free_port,
    read_state,
    spawn,
    stop_all,
    wait_until,
    write_state,
)
from herd_devkit.local.tools import k8s_assets
from herd_devkit.settings import Settings, get_settings

log = logging.getLogger(__name__)

START_ATTEMPTS = 3  # free ports race: a failed start is retried from scratch
READY_TIMEOUT = 180.0
FAKE_NODES = 3  # one per zone, so zone spread and anti-affinity schedule as on EKS
ZONES = ("a", "b", "c")
# The StorageClass the charts name (EKS: the EBS CSI driver's gp3); locally host-path volumes.
STORAGE_CLASS = "gp3"


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class ControlPlane:
    name: str
    root: Path
    assets: Path
    with_controller_manager: bool = True
    # kube-scheduler + kwok fake nodes (0: none, pods stay Pending as without a kubelet).
    nodes: int = FAKE_NODES
    # Tied processes die with this Python process (tests); detached ones outlive it (CLI).
    tie_to_parent: bool = True
    kwok: tuple[Path, Path] | None = None  # (binary, stages file); None: not built
    apiserver_args: tuple[str, ...] = ()  # more kube-apiserver flags (tests)
    _popens: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @classmethod
    def named(
        cls,
        name: str,
        settings: Settings | None = None,
        *,
        tie_to_parent: bool = True,
        with_controller_manager: bool = True,
        nodes: int = FAKE_NODES,
    ) -> ControlPlane:
        s = settings or get_settings()
        return cls(
            name=name,
            root=(s.state_dir / "clusters" / name).absolute(),
            assets=k8s_assets(s),
            tie_to_parent=tie_to_parent,
            with_controller_manager=with_controller_manager,
            nodes=nodes if with_controller_manager else 0,
            kwok=tools.kwok(s),
        )

    # -- paths ------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def server(self) -> str:
        _, extra = read_state(self.state_file)
        return str(extra["server"])

    @property
    def etcd(self) -> str:
        """etcd's client URL (its HTTP gateway serves the v3 API as JSON)."""
        _, extra = read_state(self.state_file)
        return str(extra["etcd"])

    # -- lifecycle ----------------------------------------------------------------------------
    def running(self) -> bool:
        records, extra = read_state(self.state_file)
        return bool(records) and all(alive(r) for r in records) and self._ready(extra)

    def start(self) -> ControlPlane:
        """Start from a clean slate (idempotent: a healthy running cluster is left alone)."""
        if self.running():
            log.info("cluster %s already running", self.name)
            return self
        self.stop()
        last: Exception | None = None
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once()
                return self
            except ControlPlaneError as err:
                last = err
                log.warning("cluster %s: start attempt %d failed: %s", self.name, attempt, err)
                self.stop()
        raise ControlPlaneError(f"cluster {self.name} did not start: {last}")

    def stop(self) -> None:
        records, _ = read_state(self.state_file)
        # etcd last: an API server whose etcd is gone hangs in its graceful shutdown until the
        # SIGKILL (each stop took the 15 s grace; ~1 s this way). The rest all at once, and
        # etcd even if one of them will not die.
        try:
            stop_all([r for r in records if r.name != "etcd"], self._popens)
        finally:
            stop_all([r for r in records if r.name == "etcd"], self._popens)
        self._popens.clear()
        if self.state_file.exists():
            self.state_file.unlink()

    def processes(self) -> list[ProcessRecord]:
        return read_state(self.state_file)[0]

    # -- internals ----------------------------------------------------------------------------
    def _start_once(self) -> None:
        for sub in ("pki", "etcd", "kcm", "scheduler"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        pki = self.root / "pki"
        pki.mkdir(parents=True)
        logs = self.root / "logs"
        etcd_client, etcd_peer, api_port, kcm_port, sched_port, kwok_port = (
            free_port() for _ in range(6)
        )
        server = f"https://127.0.0.1:{api_port}"
        self._write_pki(pki)
        self._write_kubeconfig(server, pki)

        records: list[ProcessRecord] = []

        def launch(name: str, args: list[str]) -> None:
            popen, record = spawn(
                name, args, logs / f"{name}.log", tie_to_parent=self.tie_to_parent
            )
            self._popens[record.pid] = popen
            records.append(record)
            write_state(
                self.state_file,
                records,
                server=server,
                etcd=f"http://127.0.0.1:{etcd_client}",
                kcm=f"https://127.0.0.1:{kcm_port}" if self.with_controller_manager else None,
            )

        etcd_url = f"http://127.0.0.1:{etcd_client}"
        launch(
            "etcd",
            [
                str(self.assets / "etcd"),
                f"--name={self.name}",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster={self.name}=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",  # throwaway data: fsync only costs time
                "--log-level=warn",
            ],
        )
        self._wait("etcd", records[-1], lambda: _get(f"{etcd_url}/health") == 200)

        api = [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={server}/",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        if not self.with_controller_manager:
            # Nothing would create the default ServiceAccounts the admission plugin demands.
            api.append("--disable-admission-plugins=ServiceAccount")
        api.extend(self.apiserver_args)
        launch("kube-apiserver", api)
        self._wait("kube-apiserver", records[-1], self._api_ready)

        def component(name: str, port: int, cert_dir: str, *extra: str) -> None:
            """kube-controller-manager or kube-scheduler: admin kubeconfig, loopback, healthz."""
            admin = str(self.kubeconfig)
            launch(
                name,
                [
                    str(self.assets / name),
                    f"--kubeconfig={admin}",
                    f"--authentication-kubeconfig={admin}",
                    f"--authorization-kubeconfig={admin}",
                    "--leader-elect=false",
                    f"--cert-dir={self.root / cert_dir}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={port}",
                    "--profiling=false",
                    *extra,
                ],
            )
            self._wait(
                name,
                records[-1],
                lambda: _get(f"https://127.0.0.1:{port}/healthz", verify=False) == 200,
            )

        if self.with_controller_manager:
            component(
                "kube-controller-manager",
                kcm_port,
                "kcm",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'serving-ca.crt'}",
                # Volumes for PVCs without a cloud (see STORAGE_CLASS).
                "--enable-hostpath-provisioner=true",
            )
        if self.nodes and self._can_run_pods():
            assert self.kwok is not None
            admin = str(self.kubeconfig)
            component("kube-scheduler", sched_port, "scheduler")
            kwok, stages = self.kwok
            launch(
                "kwok",
                [
                    str(kwok),
                    f"--kubeconfig={admin}",
                    f"--config={stages}",
                    f"--config={LOAD_BALANCER_STAGES}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                    f"--server-address=127.0.0.1:{kwok_port}",
                    "--node-ip=127.0.0.1",
                    # Node leases, as kubelets renew them: without them the node controller
                    # marks the nodes unreachable after 40 s and every pod NotReady.
                    "--node-lease-duration-seconds=40",
                    # Pod IPs outside the service range (10.0.0.0/24).
                    "--cidr=10.244.0.1/16",
                ],
            )
            self._wait(
                "kwok",
                records[-1],
                lambda: _get(f"http://127.0.0.1:{kwok_port}/healthz") == 200,
            )
            self._add_nodes_and_storage()

    def _can_run_pods(self) -> bool:
        if self.kwok is None or not (self.assets / "kube-scheduler").is_file():
            log.warning(
                "cluster %s: no kwok or kube-scheduler (run `make tools`): pods stay Pending",
                self.name,
            )
            return False
        return True

    def _add_nodes_and_storage(self) -> None:
        from kubernetes import client, config

        with config.new_client_from_config(config_file=str(self.kubeconfig)) as api:  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api)
            for i in range(self.nodes):
                core.create_node(fake_node(f"kwok-{self.name}-{i}", ZONES[i % len(ZONES)]))  # type: ignore[arg-type]
            client.StorageV1Api(api).create_storage_class(
                client.V1StorageClass(
                    metadata=client.V1ObjectMeta(
                        name=STORAGE_CLASS,
                        annotations={"storageclass.kubernetes.io/is-default-class": "true"},
                    ),
                    provisioner="kubernetes.io/host-path",
                    reclaim_policy="Delete",
                    volume_binding_mode="Immediate",
                )
            )

            def nodes_ready() -> bool:
                items = core.list_node().items
                return len(items) == self.nodes and all(
                    any(
                        c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions if n.status else None) or []
                    )
                    for n in items
                )

            if not wait_until(nodes_ready, 60, interval=0.25):
                raise ControlPlaneError(f"kwok nodes did not turn Ready; see {self.root / 'logs'}")

    def _wait(self, name: str, record: ProcessRecord, ready: object) -> None:
        def check() -> bool:
            if not alive(record):
                raise ControlPlaneError(
                    f"{name} exited; last lines of {record.log}:\n{_tail(record.log)}"
                )
            return bool(ready())  # type: ignore[operator]

        if not wait_until(check, READY_TIMEOUT, interval=0.25):
            raise ControlPlaneError(
                f"{name} not ready after {READY_TIMEOUT:.0f}s; see {record.log}"
            )

    def _ready(self, extra: dict[str, object]) -> bool:
        server = extra.get("server")
        return isinstance(server, str) and self._api_ready(server)

    def _api_ready(self, server: str | None = None) -> bool:
        server = server or self.server
        pki = self.root / "pki"
        try:
            ctx = ssl.create_default_context(cafile=str(pki / "serving-ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            with httpx.Client(verify=ctx, timeout=5) as client:
                if client.get(f"{server}/readyz").status_code != 200:
                    return False
                # /readyz can pass a moment before the default namespace is created.
                return client.get(f"{server}/api/v1/namespaces/default").status_code == 200
        except (httpx.HTTPError, OSError, ssl.SSLError):
            return False

    def _write_pki(self, pki: Path) -> None:
        serving_ca = certs.new_ca("herd-serving-ca")
        serving = certs.issue(
            serving_ca,
            "kube-apiserver",
            server=True,
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1", "10.0.0.1"),
        )
        client_ca = certs.new_ca("herd-client-ca")
        admin = certs.issue(client_ca, "admin", orgs=("system:masters",))
        sa = certs.new_key()
        files = {
            "serving-ca.crt": serving_ca.cert_pem,
            "serving.crt": serving.cert_pem,
            "serving.key": serving.key_pem,
            "client-ca.crt": client_ca.cert_pem,
            "client-ca.key": client_ca.key_pem,
            "admin.crt": admin.cert_pem,
            "admin.key": admin.key_pem,
            "sa.key": certs.key_pem(sa),
            "sa.pub": certs.public_pem(sa),
        }
        for fname, data in files.items():
            path = pki / fname
            path.write_bytes(data)
            path.chmod(0o600)

    def _write_kubeconfig(self, server: str, pki: Path) -> None:
        def b64(fname: str) -> str:
            return base64.b64encode((pki / fname).read_bytes()).decode()

        context = f"herd-{self.name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": b64("serving-ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": f"{context}-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": context,
                        "user": f"{context}-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": context,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)


KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
LOAD_BALANCER_STAGES = Path(__file__).with_name("kwok-load-balancers.yaml")


def fake_node(name: str, zone: str) -> dict[str, object]:
    """A Node kwok manages: it turns Ready and takes pods (no taint: every pod may land)."""
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                "topology.kubernetes.io/region": "local",
                "topology.kubernetes.io/zone": f"local-{zone}",
            },
        },
        "status": {
            "allocatable": resources,
            "capacity": resources,
            # Every field, or typed clients (kubernetes' V1NodeSystemInfo) refuse the Node.
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "bootID": "",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "kubeProxyVersion": "kwok",
                "kubeletVersion": "kwok",
                "machineID": name,
                "osImage": "kwok",
                "systemUUID": name,
            },
        },
    }


def _get(url: str, verify: bool = True) -> int:
    try:
        return httpx.get(url, verify=verify, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
