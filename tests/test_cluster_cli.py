"""`herd cluster up NAME` runs detached clusters that kubectl reaches; `down` leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.process import alive
from herd_devkit.local.tools import binary
from herd_devkit.settings import get_settings

HERD = str(Path(sys.executable).parent / "herd")


def herd(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERD_STATE_DIR": str(state)}
    return subprocess.run(
        [HERD, *args], env=env, text=True, capture_output=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_two_named_clusters_up_and_down(tmp_path: Path) -> None:
    if get_settings().use_existing_cluster:
        pytest.skip("embedded clusters only")
    state = tmp_path / ".herd"
    kubectl = str(binary("kubectl"))
    planes = {}
    try:
        for name in ("dev", "prod"):
            result = herd("cluster", "up", name, state=state)
            assert result.returncode == 0, result.stderr + result.stdout
            planes[name] = ControlPlane.named(
                name, settings=get_settings().model_copy(update={"state_dir": state})
            )
        assert planes["dev"].server != planes["prod"].server

        for name, cp in planes.items():
            assert cp.kubeconfig == state.absolute() / "clusters" / name / "kubeconfig"
            out = subprocess.run(
                [kubectl, "--kubeconfig", str(cp.kubeconfig), "get", "ns", "-o", "name"],
                text=True,
                capture_output=True,
                check=True,
            )
            assert "namespace/default" in out.stdout.split()

        # Idempotent: a second `up` keeps the running cluster (same server, same pids).
        before = [r.pid for r in planes["dev"].processes()]
        assert herd("cluster", "up", "dev", state=state).returncode == 0
        assert [r.pid for r in planes["dev"].processes()] == before

        listing = herd("cluster", "list", state=state)
        assert "dev" in listing.stdout and "prod" in listing.stdout

        records = [r for cp in planes.values() for r in cp.processes()]
        assert {r.name for r in records} == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        assert all(alive(r) for r in records)
    finally:
        # Every cluster this test tried to start, also one whose `up` failed half-way.
        for name in ("dev", "prod"):
            result = herd("cluster", "down", name, state=state)
            assert result.returncode == 0, result.stderr
    assert not any(alive(r) for r in records)
    assert not planes["dev"].running()
