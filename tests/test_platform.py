"""`herd up` / `herd down` (what `make up` / `make down` run), end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import config

from herd_operator.local.process import alive, read_state
from herd_operator.local.tools import binary
from herd_operator.settings import get_settings

from .helpers import ROOT, Custom, wait_for

HERD = [sys.executable, "-m", "herd_operator"]


def herd(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERD_STATE_DIR": str(state)}
    return subprocess.run(
        [*HERD, *args], env=env, text=True, capture_output=True, cwd=ROOT, timeout=600, check=False
    )


@pytest.mark.slow
def test_up_apply_examples_down(tmp_path: Path) -> None:
    if get_settings().use_existing_cluster:
        pytest.skip("runs its own embedded clusters")
    state = tmp_path / ".herd"
    try:
        result = herd("up", state=state)
        assert result.returncode == 0, result.stdout + result.stderr
        env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines())
        assert set(env) >= {"KUBECONFIG_DEV", "KUBECONFIG_PROD", "AWS_ENDPOINT_URL"}

        # Idempotent: a second `up` keeps what runs.
        pids = sorted(r.pid for f in state.rglob("*.json") for r in read_state(f)[0])
        assert herd("up", state=state).returncode == 0
        assert sorted(r.pid for f in state.rglob("*.json") for r in read_state(f)[0]) == pids

        kubectl = [str(binary("kubectl")), "--kubeconfig", env["KUBECONFIG_DEV"]]
        subprocess.run(
            [*kubectl, "apply", "-n", "default", "-f", str(ROOT / "examples")],
            check=True,
            capture_output=True,
        )
        with config.new_client_from_config(config_file=env["KUBECONFIG_DEV"]) as api:
            objects = Custom(api, "default")
            objects.wait_condition("sestemplates", "welcome", timeout=90)
            objects.wait_condition("cognitoclients", "herd-console", timeout=90)
            objects.wait_condition("cognitoclients", "herd-backend", timeout=90)
            render = wait_for(
                lambda: objects.get("sestemplates", "welcome")["status"].get("testRender"),
                30,
                "test render",
            )
            assert render["subject"] == "Welcome to Herd, Acme Farms"
            # dev's operator prefixes AWS names with the environment.
            assert objects.get("sestemplates", "welcome")["status"]["templateName"] == "dev-welcome"
    finally:
        records = [r for f in state.rglob("*.json") for r in read_state(f)[0]]
        down = herd("down", state=state)
        assert down.returncode == 0, down.stdout + down.stderr
    assert records and not any(alive(r) for r in records)
