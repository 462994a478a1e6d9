"""Two operator replicas with Kopf peering, as the chart runs them: one works, the other
waits; the working one is SIGKILLed in the middle of a 200-Tenant burst and the other takes
over. Every Tenant ends Ready, exactly 200 emails go out and Cognito holds no orphan.

On a control plane and a moto of its own (the session operator and worker must not see these
Tenants or their email jobs); the operators and the worker run under their charts'
ServiceAccounts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient

from herd_core import aws
from herd_core.constants import GROUP, VERSION
from herd_devkit.local import bootstrap, identity
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings, get_settings

from .charts import helm
from .conftest import TENANTS, WELCOME_TEMPLATE
from .helpers import Custom, OperatorProcess, WorkerProcess, wait_for

TENANT_COUNT = 200
PEERING = "herd-operator"  # the chart's ClusterKopfPeering (fullname)
NS = "herd-system"
RESUMED = "Resuming operations"  # Kopf's line when a replica starts (or goes back to) work


@dataclass
class HaStack:
    api: ApiClient
    moto: MotoServer
    aws: Settings
    resources: bootstrap.Environment
    env: dict[str, str]  # the AWS side, without a kubeconfig
    kubeconfigs: dict[str, Path]  # chart name -> a ServiceAccount token kubeconfig


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaStack]:
    if get_settings().use_existing_cluster:
        pytest.skip("needs a control plane of its own")
    root = tmp_path_factory.mktemp("ha")
    settings = get_settings().model_copy(update={"state_dir": root})
    plane = ControlPlane.named("ha", settings=settings).start()
    moto = MotoServer(root=root / "moto").start()
    try:
        aws_settings = moto.settings(settings)
        resources = bootstrap.bootstrap(aws_settings)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        kube = ["--kubeconfig", str(plane.kubeconfig), "-n", NS]
        kubeconfigs = {}
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=TENANTS))
        )
        # The operator chart brings the CRDs, the ClusterKopfPeering and the RBAC.
        for chart in ("herd-operator", "herd-workers"):
            result = helm(
                "install",
                chart,
                f"charts/{chart}",
                *kube,
                "--create-namespace",
                "-f",
                f"charts/{chart}/ci/dev-values.yaml",
                "--set",
                f"fullnameOverride={chart}",
                "--set",
                f"config.tenantsNamespace={TENANTS}",
                check=False,
            )
            assert result.returncode == 0, result.stderr
            kubeconfigs[chart] = identity.service_account_kubeconfig(
                api, plane.kubeconfig, NS, chart, root / f"{chart}.kubeconfig", seconds=3600
            )
        # No shared app client: each Tenant makes a CognitoClient of its own, the harder
        # case for replicas (a child to wait for, an app client not to orphan).
        env = {
            **resources.env(),
            **moto.env(settings.aws_region),
            "HERD_COGNITO_SHARED_CLIENT_ID": "",
        }
        yield HaStack(api, moto, aws_settings, resources, env, kubeconfigs)
    finally:
        moto.stop()
        plane.stop()


def operator(ha: HaStack, path: Path, **extra: str) -> OperatorProcess:
    return OperatorProcess(
        env={
            **extra,
            **ha.env,
            "KUBECONFIG": str(ha.kubeconfigs["herd-operator"]),
            "HERD_PEERING": PEERING,
            # A killed replica's record counts for this long: the wait before the takeover.
            "HERD_PEERING_LIFETIME": "15",
            "HERD_WAITING_DELAY": "1",
            "HERD_METRICS_PORT": "0",
            "HERD_STATE_DIR": str(path / "state"),
        },
        log=path / "operator.log",
    )


def email_worker(ha: HaStack, path: Path) -> WorkerProcess:
    return WorkerProcess(
        env={
            **ha.env,
            "KUBECONFIG": str(ha.kubeconfigs["herd-workers"]),
            "HERD_WORKER_WAIT_SECONDS": "1",
            "HERD_WORKER_MAX_SEND_RATE": "100",
            "HERD_TENANTS_NAMESPACE": TENANTS,
        },
        log=path / "worker.log",
    )


def tenant_spec(slug: str) -> dict[str, Any]:
    return {
        "displayName": f"HA {slug}",
        "slug": slug,
        "adminEmail": f"admin@{slug}.example.com",
        "plan": "starter",
    }


def pages(call: Any, key: str, token: str, **kwargs: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = call(**kwargs)
        found += page[key]
        if not page.get(token):
            return found
        kwargs[token] = page[token]


@pytest.mark.slow
def test_the_standby_replica_finishes_a_burst_when_the_active_one_is_killed(
    ha: HaStack, tmp_path: Path
) -> None:
    first = operator(ha, tmp_path / "a").start()
    # Started later, so of lower priority: it waits while the first one lives.
    second = operator(ha, tmp_path / "b").start()
    worker = email_worker(ha, tmp_path).start()
    try:

        def peers() -> dict[str, Any]:
            found: dict[str, Any] = client.CustomObjectsApi(ha.api).get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", PEERING
            )
            return dict(found.get("status") or {})

        wait_for(lambda: len(peers()) == 2, 60, "both replicas in the peering")
        assert len({p["priority"] for p in peers().values()}) == 2  # never a tie
        wait_for(lambda: RESUMED in first.log_text(), 60, "the first replica works")
        assert RESUMED not in second.log_text()  # the second waits
        objects = Custom(ha.api, TENANTS)
        objects.create("SESTemplate", "sestemplates", "welcome", WELCOME_TEMPLATE)
        objects.wait_condition("sestemplates", "welcome", timeout=60)

        prefix = f"ha-{uuid.uuid4().hex[:6]}"
        slugs = [f"{prefix}-{i:03d}" for i in range(TENANT_COUNT)]
        custom = client.CustomObjectsApi(ha.api)

        def tenants() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
                GROUP, VERSION, TENANTS, "tenants"
            )["items"]
            return items

        def ready() -> int:
            return sum((t.get("status") or {}).get("phase") == "Ready" for t in tenants())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda s: objects.create("Tenant", "tenants", s, tenant_spec(s)), slugs))
        wait_for(lambda: ready() >= 10, 300, "the first Tenants Ready")
        first.kill()  # SIGKILL in the middle of the burst: no goodbye, its record just ages
        assert ready() < TENANT_COUNT, "the burst ended before the kill: nothing was tested"

        wait_for(lambda: RESUMED in second.log_text(), 120, "the standby takes over")
        wait_for(lambda: ready() == TENANT_COUNT, 900, "every Tenant Ready")

        def sent() -> int:
            return sum(
                bool(((t.get("status") or {}).get("welcomeEmail") or {}).get("sentAt"))
                for t in tenants()
            )

        wait_for(lambda: sent() == TENANT_COUNT, 300, "every welcome email sent")
        messages = ha.moto.data()["ses"]["TemplateMessage"]
        assert len(messages) == TENANT_COUNT

        # No orphan in Cognito: one user and one app client per Tenant, each the one its
        # Tenant and CognitoClient recorded.
        idp = aws.client("cognito-idp", ha.aws)
        pool_id = ha.resources.user_pool_id
        users = pages(idp.list_users, "Users", "PaginationToken", UserPoolId=pool_id)
        emails = sorted(a["Value"] for u in users for a in u["Attributes"] if a["Name"] == "email")
        assert [e for e in emails if e.endswith(".example.com") and prefix in e] == sorted(
            f"admin@{s}.example.com" for s in slugs
        )
        clients = pages(
            idp.list_user_pool_clients,
            "UserPoolClients",
            "NextToken",
            UserPoolId=pool_id,
            MaxResults=60,
        )
        ours = sorted(c["ClientId"] for c in clients if c["ClientName"].startswith("tenant-"))
        recorded = sorted(
            c["status"]["clientId"]
            for c in custom.list_namespaced_custom_object(
                GROUP, VERSION, TENANTS, "cognitoclients"
            )["items"]
        )
        assert len(recorded) == TENANT_COUNT
        assert ours == recorded
    finally:
        for process in (worker, second, first):
            process.stop()


def test_two_objects_in_flight_finish_a_burst_and_a_restart_over_it(
    ha: HaStack, tmp_path: Path
) -> None:
    """HERD_OBJECTS_IN_FLIGHT bounds the objects of a kind handled at once; the rest wait
    their turn. Two places never deadlock: not a burst of new Tenants (a Tenant waiting for
    its CognitoClient gives its place up; the child's Ready wakes it), nor a restart over
    more objects than places (with a kopf index, every worker waited, holding its place,
    for all of them to be indexed, and none ever was)."""
    custom = client.CustomObjectsApi(ha.api)
    objects = Custom(ha.api, TENANTS)
    if not objects.exists("sestemplates", "welcome"):
        objects.create("SESTemplate", "sestemplates", "welcome", WELCOME_TEMPLATE)
    prefix = f"fl-{uuid.uuid4().hex[:6]}"

    def sent(slugs: list[str]) -> bool:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, TENANTS, "tenants")
        done = {
            t["metadata"]["name"]
            for t in items["items"]
            if ((t.get("status") or {}).get("welcomeEmail") or {}).get("sentAt")
            and (t.get("status") or {}).get("phase") == "Ready"
        }
        return set(slugs) <= done

    worker = email_worker(ha, tmp_path).start()
    places = {"HERD_OBJECTS_IN_FLIGHT": "2"}
    # A burst of 12 new Tenants; then a new operator over them, and 4 more.
    phases = [("burst", range(12)), ("after a restart over 12 or more", range(12, 16))]
    try:
        for what, numbers in phases:
            slugs = [f"{prefix}-{i:02d}" for i in numbers]
            op = operator(ha, tmp_path / f"op-{numbers[0]}", **places).start()
            try:
                for slug in slugs:
                    objects.create("Tenant", "tenants", slug, tenant_spec(slug))
                wait_for(lambda s=slugs: sent(s), 300, f"{what}: Ready and emailed")
            finally:
                op.stop()
        messages = ha.moto.data()["ses"]["TemplateMessage"]
        assert sum(prefix in json.dumps(m) for m in messages) == 16
    finally:
        worker.stop()
