"""Branch-to-cluster end to end: two embedded clusters (dev, prod), one real bare repository
seeded from this working tree, each cluster's root Application from clusters/<env>/.
A commit to dev reaches dev and not prod; merging dev into main brings it to prod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client import ApiClient

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitops import (
    bootstrap_cluster,
    install_operator_chart,
    operator_kubeconfig,
    seed_origin,
    url_rewrites,
)
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.process import free_port
from herd_devkit.settings import get_settings

from .helpers import ROOT, Custom, OperatorProcess, wait_for

SYSTEM = "herd-system"
pytestmark = pytest.mark.slow


@dataclass
class Env:
    name: str
    plane: ControlPlane
    api: ApiClient
    operator: OperatorProcess

    @property
    def apps(self) -> Custom:
        return Custom(self.api, SYSTEM)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return seed_origin(ROOT, tmp_path_factory.mktemp("origin"))


@pytest.fixture(scope="module")
def envs(
    origin: Repo, operator_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Env]]:
    if get_settings().use_existing_cluster:
        pytest.skip("needs two clusters of its own")
    out: dict[str, Env] = {}
    try:
        for name in ("dev", "prod"):
            state = tmp_path_factory.mktemp(f"e2e-{name}")
            plane = ControlPlane.named(
                name, settings=get_settings().model_copy(update={"state_dir": state})
            ).start()
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            # As `make up`: the operator chart first, and the operator runs as its account.
            install_operator_chart(plane.kubeconfig, ROOT, name)
            bootstrap_cluster(api, ROOT, name)
            account = operator_kubeconfig(api, plane.kubeconfig, state / "operator.kubeconfig")
            env = {
                **operator_env,
                "KUBECONFIG": str(account),
                "HERD_STATE_DIR": str(state / "operator"),
                "HERD_AWS_NAME_PREFIX": f"e2e-{name}-",
                "HERD_METRICS_PORT": "0",
                "HERD_WEBHOOK_PORT": "0",
                "HERD_GIT_URL_REWRITES": json.dumps(url_rewrites(origin)),
            }
            operator = OperatorProcess(
                env=env, log=state / "operator.log", health_port=free_port()
            ).start()
            out[name] = Env(name, plane, api, operator)
        yield out
    finally:
        for env in out.values():
            env.operator.stop()
            env.plane.stop()


def herd(*args: str, env: dict[str, Env]) -> subprocess.CompletedProcess[str]:
    rewrites = env["dev"].operator.env["HERD_GIT_URL_REWRITES"]
    return subprocess.run(
        [sys.executable, "-m", "herd_core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HERD_GIT_URL_REWRITES": rewrites, "COLUMNS": "250"},
    )


def synced(env: Env, app: str, revision: str, timeout: float = 90) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ok() -> dict[str, Any] | None:
        st = env.apps.get("applications", app).get("status") or {}
        seen.update(sync=st.get("sync"), operation=st.get("operationState"))
        seen.update(conditions=st.get("conditions"), reconciled=st.get("reconciledAt"))
        sync = st.get("sync") or {}
        return st if sync.get("status") == "Synced" and sync.get("revision") == revision else None

    try:
        return wait_for(ok, timeout, f"{env.name}: {app} Synced at {revision[:8]}")
    except AssertionError as err:
        raise AssertionError(f"{err}; status: {seen}") from None


def api_image(env: Env) -> str:
    dep = client.AppsV1Api(env.api).read_namespaced_deployment("herd-api", SYSTEM)
    return str(dep.spec.template.spec.containers[0].image)


def tag_values(tag: str) -> str:
    values = yaml.safe_load((ROOT / "apps" / "herd-api" / "values.yaml").read_text())
    values["image"]["tag"] = tag
    return yaml.safe_dump(values, sort_keys=False)


def test_dev_then_promotion_to_prod(envs: dict[str, Env], origin: Repo) -> None:
    dev, prod = envs["dev"], envs["prod"]
    start_dev, start_main = origin.head("dev"), origin.head("main")
    for env, head in ((dev, start_dev), (prod, start_main)):
        synced(env, "root", head)
        for app in ("platform", "herd-operator", "herd-api", "herd-workers", "openremote"):
            synced(env, app, head)
    base = yaml.safe_load((ROOT / "apps" / "herd-api" / "values.yaml").read_text())
    assert api_image(dev).endswith(f":{base['image']['tag']}")
    assert "111111111111" in api_image(dev) and "222222222222" in api_image(prod)

    # A commit to dev that changes an image tag in apps/ reaches dev, and not prod.
    bump = origin.commit(
        "dev", "herd-api 9.9.9", {"apps/herd-api/values.yaml": tag_values("9.9.9")}
    )
    synced(dev, "herd-api", bump)
    assert api_image(dev).endswith(":9.9.9")
    synced(prod, "herd-api", start_main)  # prod polls main: unchanged
    assert api_image(prod).endswith(f":{base['image']['tag']}")

    # `herd app diff` on dev: in sync; `herd app status` lists both clusters' apps.
    assert (
        herd(
            "app", "diff", "herd-api", "--kubeconfig", str(dev.plane.kubeconfig), env=envs
        ).returncode
        == 0
    )
    listing = herd("app", "status", "--kubeconfig", str(prod.plane.kubeconfig), env=envs)
    assert "herd-system/herd-api" in listing.stdout and "Synced" in listing.stdout

    # Promotion is gated on dev: an Application of dev that is not Synced and Healthy at
    # dev's head refuses it (exit 1), naming the Application and why.
    gate = ["promote", "--repo", origin.url, "--dev-kubeconfig", str(dev.plane.kubeconfig)]
    dev.apps.create(
        "Application",
        "applications",
        "broken",
        {
            "project": "platform",
            "source": {
                "repoURL": "https://github.com/herd-itt/herd.git",
                "targetRevision": "dev",
                "path": "no/such/folder",
            },
            "destination": {"namespace": SYSTEM},
        },
    )
    refused = wait_for(
        lambda: (
            (r := herd(*gate, "--check", env=envs)).returncode == 1
            and f"{SYSTEM}/broken" in r.stdout
            and r
        ),
        60,
        "promotion refused while dev has a broken Application",
    )
    assert origin.head("main") == start_main, refused.stdout  # nothing merged
    dev.apps.delete("applications", "broken")
    dev.apps.wait_gone("applications", "broken", timeout=60)
    # Every dev Application at the head (the others poll): then the gate opens.
    wait_for(lambda: herd(*gate, "--check", env=envs).returncode == 0, 180, "dev promotable")

    # `herd promote` merges dev into main and shows what prod will change.
    promoted = herd(*gate, env=envs)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    out = promoted.stdout.replace("\n  ", " ")
    assert "herd-api: Deployment herd-api: spec.template.spec.containers[0].image" in out
    merged = origin.head("main")
    assert merged != start_main
    synced(prod, "herd-api", merged)
    assert api_image(prod).endswith(":9.9.9")
    assert prod.apps.get("applications", "herd-api")["status"]["history"][-1]["revision"] == merged


def test_prune_self_heal_and_a_broken_commit(envs: dict[str, Env], origin: Repo) -> None:
    dev = envs["dev"]
    apps_api = client.AppsV1Api(dev.api)
    synced(dev, "herd-api", origin.head("dev"))

    # Editing a live object by hand is reverted (selfHeal).
    want = api_image(dev)
    apps_api.patch_namespaced_deployment(
        "herd-api",
        SYSTEM,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "api", "image": "evil/image:latest"}]}
                }
            }
        },
    )
    wait_for(lambda: api_image(dev) == want, 60, "hand edit reverted")

    # Removing an object from git prunes it.
    tenants = Custom(dev.api, "tenants")
    wait_for(lambda: tenants.exists("sestemplates", "welcome"), 60, "welcome template")
    removed = origin.commit(
        "dev", "drop the welcome template", remove=("apps/platform/welcome-template.yaml",)
    )
    synced(dev, "platform", removed)
    tenants.wait_gone("sestemplates", "welcome", timeout=60)

    # A commit that does not render leaves the cluster as it was, and says why.
    # Its generation: the spec's version (controllers keep writing its status meanwhile).
    before = apps_api.read_namespaced_deployment("herd-api", SYSTEM).metadata.generation
    broken = yaml.safe_load(tag_values("1.0.0"))
    broken["replicaCount"] = 0  # refused by charts/herd-api/values.schema.json
    origin.commit("dev", "broken values", {"apps/herd-api/values.yaml": yaml.safe_dump(broken)})

    def comparison_error() -> str | None:
        st = dev.apps.get("applications", "herd-api").get("status") or {}
        return next(
            (c["message"] for c in st.get("conditions") or [] if c["type"] == "ComparisonError"),
            None,
        )

    assert "replicaCount" in wait_for(comparison_error, 60, "ComparisonError")
    assert apps_api.read_namespaced_deployment("herd-api", SYSTEM).metadata.generation == before
    fixed = origin.commit("dev", "fixed", {"apps/herd-api/values.yaml": tag_values("1.0.1")})
    synced(dev, "herd-api", fixed)
    assert api_image(dev).endswith(":1.0.1")


def gate_files(node_selector: dict[str, str]) -> dict[str, str]:
    """A wave-1 Deployment and a wave-2 ConfigMap for the platform app (namespace tenants)."""
    labels = {"app": "gate"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "gate",
            "namespace": "tenants",
            "annotations": {"argocd.argoproj.io/sync-wave": "1"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},  # copies: a shared dict dumps as an
            "template": {  # alias, which the engine refuses in plain manifests
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "nodeSelector": node_selector,
                    # The tenants namespace enforces the restricted Pod Security Standard.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "gate",
                            "image": "registry.k8s.io/pause:3.10",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    after = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "after-gate",
            "namespace": "tenants",
            "annotations": {"argocd.argoproj.io/sync-wave": "2"},
        },
        "data": {"k": "v"},
    }
    return {
        "apps/platform/gate.yaml": yaml.safe_dump(deployment),
        "apps/platform/after-gate.yaml": yaml.safe_dump(after),
    }


def test_a_later_wave_waits_for_the_pods_of_an_earlier_one(
    envs: dict[str, Env], origin: Repo
) -> None:
    """kwok runs pods, so the wave health gate is on: a wave waits until the Deployment of
    the wave before it has available pods."""
    dev = envs["dev"]
    core = client.CoreV1Api(dev.api)

    def after_gate() -> bool:
        try:
            core.read_namespaced_config_map("after-gate", "tenants")
        except client.exceptions.ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    # No node matches: the pod stays Pending, the Deployment Progressing, wave 2 waits.
    origin.commit("dev", "gated", gate_files({"herd-test/no-such-node": "true"}))

    seen: dict[str, Any] = {}

    def waiting() -> str | None:
        st = dev.apps.get("applications", "platform").get("status") or {}
        op = st.get("operationState") or {}
        seen.update(op=op, conditions=st.get("conditions"))
        message = str(op.get("message", ""))
        return message if op.get("phase") == "Running" and "waiting for wave" in message else None

    try:
        message = wait_for(waiting, 90, "platform sync waiting on the gate")
    except AssertionError as err:
        raise AssertionError(f"{err}; status: {seen}") from None
    assert "Deployment" in message
    assert not after_gate()

    # Pods that can be scheduled: kwok runs them, the Deployment turns available, wave 2 goes.
    opened = origin.commit("dev", "gate opens", gate_files({"kubernetes.io/os": "linux"}))
    synced(dev, "platform", opened)
    assert after_gate()
    pods = core.list_namespaced_pod("tenants", label_selector="app=gate").items
    assert pods and all(p.status.phase == "Running" for p in pods)

    removed = origin.commit(
        "dev", "no gate", remove=("apps/platform/gate.yaml", "apps/platform/after-gate.yaml")
    )
    synced(dev, "platform", removed)
