"""What the bench scripts share: the local stack (devkit's Stack) with an environment's AWS
side and our CRDs, and the Herd programs a bench starts on top."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core import aws
from herd_core.constants import FINALIZER, GROUP, VERSION
from herd_core.emailjobs import EmailJob, enqueue
from herd_devkit.local import bootstrap
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitops import ensure_namespace
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port
from herd_devkit.local.service import Service
from herd_devkit.local.tools import binary
from herd_devkit.settings import Settings, get_settings
from herd_devkit.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
# The chart whose ServiceAccount each program runs as.
CHARTS = {"operator": "herd-operator", "worker": "herd-workers", "api": "herd-api"}


def create_tenant(api: ApiClient, slug: str, display_name: str, admin_email: str) -> dict[str, Any]:
    """A Tenant straight into the API server, as a signup would make it."""
    return client.CustomObjectsApi(api).create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP,
        VERSION,
        "tenants",
        "tenants",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Tenant",
            "metadata": {"name": slug, "finalizers": [FINALIZER]},
            "spec": {
                "displayName": display_name,
                "slug": slug,
                "adminEmail": admin_email,
                "plan": "starter",
            },
        },
    )


def tenants_namespace(api: ApiClient) -> None:
    """The `tenants` namespace with the welcome SESTemplate every Tenant's email uses."""
    ensure_namespace(api, "tenants")
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        "tenants",
        "sestemplates",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SESTemplate",
            "metadata": {"name": "welcome"},
            "spec": {"subject": "Welcome {{displayName}}", "text": "Hi {{displayName}}"},
        },
    )


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
class Bench:
    """An embedded control plane, moto with an environment's AWS side, Herd's CRDs, and the
    Herd processes a bench starts on top (stopped with the stack)."""

    stack: Stack
    plane: ControlPlane
    moto: MotoServer
    aws: Settings  # for the bench's own AWS calls
    resources: bootstrap.Environment
    api: ApiClient
    services: list[Service] = field(default_factory=list)
    identities: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.stack.root

    def identity(self, program: str) -> Path:
        """A kubeconfig for `program`'s chart ServiceAccount (the chart installed first, its
        Roles in the `tenants` namespace): each program runs as on EKS, under its own RBAC,
        and authenticates as it does there (a ServiceAccount token, not the admin's client
        certificate)."""
        chart = CHARTS[program]
        if chart not in self.identities:
            ensure_namespace(self.api, "tenants")
            self.identities[chart] = self.stack.chart_identity(
                self.api, self.plane.kubeconfig, chart, self.root / f"{chart}.kubeconfig"
            )
        return self.identities[chart]

    def run(
        self, command: list[str], port_variable: str, name: str | None = None, **env: str
    ) -> str:
        """Start `herd <command>` with a free port in `port_variable`, under its chart's
        ServiceAccount; its base URL. `name` (default: the command) must differ between
        processes of the same command."""
        program = self.stack.program(
            command,
            port_variable,
            self.stack.program_env(self.identity(command[0]), self.resources, **env),
            name=name or command[0],
        )
        self.services.append(program.service)
        return program.url

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
def stack(prefix: str) -> Iterator[Bench]:
    built = Stack(root=Path(tempfile.mkdtemp(prefix=prefix)), settings=get_settings())
    with kept_on_failure(built):
        plane = built.cluster("bench")
        moto = built.moto()
        resources = built.bootstrap_aws()
        api = built.client(plane.kubeconfig)
        built.install_crds(api)
        yield Bench(built, plane, moto, built.aws(), resources, api)


@contextmanager
def kept_on_failure(built: Stack) -> Iterator[None]:
    """Stop the stack; remove its files (etcd's data, logs: ~100 MB a run) unless the bench
    failed, when they are what tells why."""
    try:
        yield
    except BaseException:
        built.stop()
        print(f"logs and state kept in {built.root}", file=sys.stderr)
        raise
    built.stop()
    shutil.rmtree(built.root, ignore_errors=True)


# -- GitOps benches: one Project and an operator that serves Applications only ---------------
WEBHOOK_SECRET = "bench"


def sync_namespace(api: ApiClient, namespace: str) -> None:
    """`namespace` with the ServiceAccount `bench` the Project's syncs act as, admin there."""
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, {"metadata": {"name": "bench"}}
    )
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "bench-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": namespace}],
        },
    )


def bench_project(api: ApiClient, namespaces: list[str]) -> None:
    """The Project `bench`: any repository, Applications in and into `namespaces`."""
    client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP,
        VERSION,
        "projects",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Project",
            "metadata": {"name": "bench"},
            "spec": {
                "sourceRepos": ["*"],
                "sourceNamespaces": namespaces,
                "destinations": [{"namespace": ns} for ns in namespaces],
                "destinationServiceAccounts": [
                    {"namespace": "*", "defaultServiceAccount": "bench"}
                ],
            },
        },
    )


def gitops_operator(
    built: Stack, api: ApiClient, plane: ControlPlane, namespaces: list[str], **env: str
) -> tuple[Any, int]:
    """The operator as on EKS (its chart's ServiceAccount and RBAC, a TokenRequest token),
    Applications only (no AWS), reconciling `namespaces`; it and its webhook's port."""
    identity = built.chart_identity(
        api, plane.kubeconfig, "herd-operator", built.root / "operator.kubeconfig"
    )
    webhook = free_port()
    operator = built.program(
        ["operator", "run"],
        "HERD_HEALTH_PORT",
        built.program_env(
            identity,
            None,
            HERD_METRICS_PORT="0",
            HERD_WEBHOOK_PORT=str(webhook),
            HERD_WEBHOOK_SECRET=WEBHOOK_SECRET,
            HERD_STATE_DIR=str(built.root / "operator"),
            HERD_APPLICATION_NAMESPACES=json.dumps(namespaces),
            HERD_LOCAL_SOURCES="true",
            **env,
        ),
    )
    return operator, webhook


def py_spy() -> str:
    """py-spy from the dev group, beside this interpreter (no activated venv needed)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def kubectl_apply(kubeconfig: Path, namespace: str, manifest: Path) -> float:
    """Seconds `kubectl apply --server-side` takes for `manifest` in `namespace`: the
    figure Herd's sync is held against."""
    began = time.perf_counter()
    subprocess.run(
        [
            str(binary("kubectl")),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            "apply",
            "--server-side",
            "-f",
            str(manifest),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def push(webhook: int, repo_url: str, sha: str, timeout: float = 30) -> httpx.Response:
    """GitHub's push event for `sha` on dev, signed, to the operator's webhook."""
    body = json.dumps(
        {"ref": "refs/heads/dev", "after": sha, "repository": {"clone_url": repo_url}}
    ).encode()
    sig = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"http://127.0.0.1:{webhook}/webhooks/github",
        content=body,
        timeout=timeout,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig},
    )
