"""`make bootstrap ENV=dev` against a cluster KUBECONFIG reaches (an embedded control plane
here): CRDs, the operator chart and the root Application; the Application then syncs from a
local repository. kwok runs no container, so a local operator process stands in for the pod."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitops import operator_kubeconfig, seed_origin, url_rewrites
from herd_devkit.settings import get_settings

from .charts import helm
from .helpers import ROOT, Custom, OperatorProcess, wait_for

pytestmark = pytest.mark.slow


def test_make_bootstrap_hands_the_cluster_to_git(
    tmp_path: Path, operator_env: dict[str, str]
) -> None:
    if get_settings().use_existing_cluster:
        pytest.skip("needs a cluster of its own")
    cp = ControlPlane.named(
        "boot", settings=get_settings().model_copy(update={"state_dir": tmp_path})
    ).start()
    operator = None
    try:
        env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
        result = subprocess.run(
            ["make", "bootstrap", "ENV=dev"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        status = helm(
            "status",
            "herd-operator",
            "-n",
            "herd-system",
            "--kubeconfig",
            str(cp.kubeconfig),
            "-o",
            "json",
        )
        assert json.loads(status.stdout)["info"]["status"] == "deployed"
        with config.new_client_from_config(config_file=str(cp.kubeconfig)) as api:
            dep = client.AppsV1Api(api).read_namespaced_deployment("herd-operator", "herd-system")
            assert "111111111111.dkr.ecr" in dep.spec.template.spec.containers[0].image
            apps = Custom(api, "herd-system")
            assert apps.get("applications", "root")["spec"]["source"]["targetRevision"] == "dev"

            origin = seed_origin(ROOT, tmp_path / "origin")
            operator = OperatorProcess(
                env={
                    **operator_env,
                    # The ServiceAccount `make bootstrap` installed, as on EKS.
                    "KUBECONFIG": str(
                        operator_kubeconfig(api, cp.kubeconfig, tmp_path / "operator.kubeconfig")
                    ),
                    "HERD_STATE_DIR": str(tmp_path / "operator"),
                    "HERD_METRICS_PORT": "0",
                    "HERD_WEBHOOK_PORT": "0",
                    "HERD_WAVE_HEALTH_GATE": "false",
                    "HERD_AWS_NAME_PREFIX": "boot-",
                    "HERD_GIT_URL_REWRITES": json.dumps(url_rewrites(origin)),
                },
                log=tmp_path / "operator.log",
            ).start()

            def synced(name: str) -> bool:
                st = apps.get("applications", name).get("status") or {}
                return (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get(
                    "revision"
                ) == origin.head("dev")

            wait_for(lambda: synced("root"), 90, "root Synced")
            for name in ("platform", "herd-operator", "herd-api", "herd-workers"):
                wait_for(lambda n=name: synced(n), 90, f"{name} Synced")
    finally:
        if operator is not None:
            operator.stop()
        cp.stop()
