"""The operator chart's RBAC is enough and no wider than needed: the operator runs with a
token of the chart's ServiceAccount (TokenRequest) and reconciles every kind, on a control
plane of its own where nothing else has admin rights. Applications sync by impersonating
their Project's ServiceAccount: the operator itself may not write what they apply."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient

from herd_devkit.local import identity
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitrepo import Repo
from herd_devkit.settings import get_settings

from .charts import helm
from .conftest import TENANTS, WELCOME_TEMPLATE
from .helpers import Custom, OperatorProcess, may, sync_project, wait_for

SA, NS = "herd-operator", "herd-system"


@pytest.fixture(scope="module")
def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if get_settings().use_existing_cluster:
        pytest.skip("needs a control plane of its own")
    settings = get_settings().model_copy(update={"state_dir": tmp_path_factory.mktemp("rbac")})
    cp = ControlPlane.named("rbac", settings=settings).start()
    yield cp
    cp.stop()


def sa_kubeconfig(cp: ControlPlane, api: ApiClient, path: Path) -> Path:
    return identity.service_account_kubeconfig(api, cp.kubeconfig, NS, SA, path, seconds=3600)


def allowed(api: ApiClient, verb: str, group: str, resource: str, namespace: str = "") -> bool:
    return may(api, NS, SA, verb, group, resource, namespace)


@pytest.mark.slow
def test_operator_reconciles_every_kind_with_its_own_service_account(
    rbac_cluster: ControlPlane,
    operator_env: dict[str, str],
    tmp_path: Path,
) -> None:
    kube = ["--kubeconfig", str(rbac_cluster.kubeconfig), "-n", NS]
    result = helm(
        "install",
        SA,
        "charts/herd-operator",
        *kube,
        "--create-namespace",
        "-f",
        "charts/herd-operator/ci/dev-values.yaml",
        "--set",
        "fullnameOverride=herd-operator",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with config.new_client_from_config(config_file=str(rbac_cluster.kubeconfig)) as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=TENANTS))
        )
        # An https URL git rewrites to a local repository (operator config, as in `make up`):
        # the operator is not in local mode, so Applications may not name local paths.
        repo = Repo.create(
            tmp_path / "repo",
            {
                "m/cm.yaml": (
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: synced\ndata:\n  k: v\n"
                )
            },
        )
        upstream = "https://git.example.test/herd/rbac.git"
        env = {
            **operator_env,
            "KUBECONFIG": str(sa_kubeconfig(rbac_cluster, api, tmp_path / "sa.kubeconfig")),
            "HERD_PEERING": "herd-operator",
            # Its own ports and git cache: the session operator runs beside it.
            "HERD_WEBHOOK_PORT": "0",
            "HERD_METRICS_PORT": "0",
            "HERD_STATE_DIR": str(tmp_path / "operator-state"),
            # Its own AWS names: the session operator made `welcome` in the same moto.
            "HERD_AWS_NAME_PREFIX": "rbac-",
            "HERD_GIT_URL_REWRITES": json.dumps({repo.url: upstream}),
            "HERD_LOCAL_SOURCES": "false",
            "HERD_APPLICATION_NAMESPACES": "[]",  # its own namespace only
        }
        operator = OperatorProcess(env=env, log=tmp_path / "operator.log").start()
        try:
            objects = Custom(api, TENANTS)
            objects.create("SESTemplate", "sestemplates", "welcome", WELCOME_TEMPLATE)
            name = f"rbac-{uuid.uuid4().hex[:8]}"
            objects.create(
                "CognitoClient",
                "cognitoclients",
                name,
                {"clientName": name, "secretName": f"{name}-creds"},
            )
            slug = f"rbac-{uuid.uuid4().hex[:8]}"
            objects.create(
                "Tenant",
                "tenants",
                slug,
                {
                    "displayName": "RBAC Co",
                    "slug": slug,
                    "adminEmail": f"admin@{slug}.example.com",
                    "plan": "starter",
                },
            )
            objects.wait_condition("sestemplates", "welcome", timeout=60)
            objects.wait_condition("cognitoclients", name, timeout=60)
            objects.wait_condition("tenants", slug, timeout=90)

            # An Application applies, as its Project's ServiceAccount, what that one may.
            project = sync_project(api, NS, destinations=(TENANTS,))
            apps = Custom(api, NS)
            base = {
                "project": project,
                "destination": {"namespace": TENANTS},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            }
            apps.create(
                "Application",
                "applications",
                "rbac",
                {**base, "source": {"repoURL": upstream, "targetRevision": "dev", "path": "m"}},
            )
            # The same repository named by its local path: refused outside local mode.
            apps.create(
                "Application",
                "applications",
                "local",
                {**base, "source": {"repoURL": repo.url, "targetRevision": "dev", "path": "m"}},
            )

            def synced() -> bool:
                st = apps.get("applications", "rbac").get("status") or {}
                return (st.get("sync") or {}).get("status") == "Synced"

            def refused() -> str | None:
                conds = (apps.get("applications", "local").get("status") or {}).get(
                    "conditions"
                ) or []
                return next((c["message"] for c in conds if c["type"] == "ComparisonError"), None)

            wait_for(synced, 60, "Application Synced with the ServiceAccount's token")
            cm = client.CoreV1Api(api).read_namespaced_config_map("synced", TENANTS)
            assert cm.data == {"k": "v"}
            assert "file://" in wait_for(refused, 30, "a local repository refused")
            local = apps.get("applications", "local")["status"]
            assert local["sync"]["status"] == "Unknown"
            assert not local.get("operationState") and not local.get("resources")
            # Cascade delete, as the ServiceAccount too.
            client.CustomObjectsApi(api).patch_namespaced_custom_object(
                "platform.herd-itt.com",
                "v1alpha1",
                NS,
                "applications",
                "rbac",
                {"metadata": {"finalizers": ["resources-finalizer.platform.herd-itt.com"]}},
            )
            apps.delete("applications", "rbac")
            apps.wait_gone("applications", "rbac", timeout=60)
            with pytest.raises(client.ApiException) as gone:
                client.CoreV1Api(api).read_namespaced_config_map("synced", TENANTS)
            assert gone.value.status == 404
            objects.delete("tenants", slug)
            objects.wait_gone("tenants", slug, timeout=60)
            objects.delete("cognitoclients", name)
            objects.wait_gone("cognitoclients", name, timeout=60)
            log = operator.log_text()
            assert "Forbidden" not in log and " 403 " not in log, log[-3000:]
        finally:
            operator.stop()

        # And no wider than needed.
        assert allowed(api, "patch", "platform.herd-itt.com", "tenants", TENANTS)
        assert allowed(api, "create", "", "secrets", TENANTS)
        assert allowed(api, "impersonate", "", "serviceaccounts", NS)
        assert allowed(api, "get", "", "secrets", NS)  # repository credentials, here only
        for verb, group, resource, namespace in [
            ("create", "", "pods", TENANTS),
            ("get", "", "nodes", ""),
            ("delete", "", "namespaces", ""),
            ("create", "", "pods/exec", TENANTS),
            ("create", "certificates.k8s.io", "certificatesigningrequests", ""),
            ("delete", "apiextensions.k8s.io", "customresourcedefinitions", ""),
            ("impersonate", "", "users", ""),
            ("impersonate", "", "groups", ""),
            # Secrets: written, never read, outside the Application namespaces.
            ("get", "", "secrets", TENANTS),
            ("list", "", "secrets", ""),
            ("watch", "", "secrets", ""),
            # What Applications apply is their ServiceAccount's business, not the operator's.
            ("create", "", "configmaps", TENANTS),
            ("create", "apps", "deployments", TENANTS),
            ("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""),
            ("bind", "rbac.authorization.k8s.io", "clusterroles", ""),
            ("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
            ("create", "platform.herd-itt.com", "applications", NS),
            ("create", "platform.herd-itt.com", "projects", ""),
            ("*", "*", "*", ""),
        ]:
            assert not allowed(api, verb, group, resource, namespace), (verb, resource)
