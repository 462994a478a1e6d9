"""`make up` / `make down` end to end: the whole platform locally, a signup through the API
that ends in a Ready Tenant and one welcome email, `herd promote` bringing a dev commit to
prod, `herd status` green, and nothing left running afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from herd_operator.local.gitrepo import Repo
from herd_operator.local.process import alive, read_state
from herd_operator.local.tools import binary
from herd_operator.settings import get_settings

from .helpers import ROOT, Custom, wait_for

pytestmark = pytest.mark.slow


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERD_STATE_DIR": str(state), "COLUMNS": "250"}
    return subprocess.run(
        list(args), env=env, text=True, capture_output=True, cwd=ROOT, timeout=900, check=False
    )


def herd(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "herd_operator", *args, state=state)


def records(state: Path) -> list[object]:
    return [r for f in state.rglob("*.json") for r in read_state(f)[0]]


def test_make_up_signup_promote_make_down(tmp_path: Path) -> None:
    if get_settings().use_existing_cluster:
        pytest.skip("runs its own embedded clusters")
    state = tmp_path / ".herd"
    try:
        up = run("make", "up", state=state)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "sign up at http://127.0.0.1:" in up.stdout
        env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines())
        assert set(env) >= {
            "KUBECONFIG_DEV",
            "KUBECONFIG_PROD",
            "AWS_ENDPOINT_URL",
            "HERD_API_URL",
            "HERD_ORIGIN_REPO",
        }

        # Idempotent: a second `make up` keeps what runs.
        pids = sorted(r.pid for r in records(state))  # type: ignore[attr-defined]
        assert run("make", "up", state=state).returncode == 0
        assert sorted(r.pid for r in records(state)) == pids  # type: ignore[attr-defined]

        # A signup through the API becomes a Ready Tenant in dev and one welcome email.
        slug = f"local-{uuid.uuid4().hex[:6]}"
        email = f"owner@{slug}.example.com"
        answer = httpx.post(
            f"{env['HERD_API_URL']}/v1/signups",
            timeout=30,
            json={
                "displayName": "Local Farms",
                "slug": slug,
                "adminEmail": email,
                "plan": "starter",
            },
        )
        assert answer.status_code == 202, answer.text
        with config.new_client_from_config(config_file=env["KUBECONFIG_DEV"]) as api:
            tenants = Custom(api, "tenants")
            tenants.wait_condition("tenants", slug, timeout=120)
            tenants.wait_condition("tenants", slug, "WelcomeEmailSent", timeout=60)
        mail = herd("mail", state=state)
        assert mail.returncode == 0, mail.stderr
        rows = [line for line in mail.stdout.splitlines() if email in line]
        assert len(rows) == 1 and "Welcome to Herd, Local Farms" in rows[0], mail.stdout

        # The examples apply to dev and turn Ready.
        kubectl = [str(binary("kubectl")), "--kubeconfig", env["KUBECONFIG_DEV"]]
        subprocess.run(
            [*kubectl, "apply", "-n", "default", "-f", str(ROOT / "examples")],
            check=True,
            capture_output=True,
        )
        with config.new_client_from_config(config_file=env["KUBECONFIG_DEV"]) as api:
            objects = Custom(api, "default")
            objects.wait_condition("sestemplates", "maintenance-notice", timeout=90)
            objects.wait_condition("cognitoclients", "herd-console", timeout=90)
            objects.wait_condition("cognitoclients", "herd-backend", timeout=90)
            status = objects.get("sestemplates", "maintenance-notice")["status"]
            assert status["templateName"] == "dev-maintenance-notice"
            render = wait_for(
                lambda: objects.get("sestemplates", "maintenance-notice")["status"].get(
                    "testRender"
                ),
                30,
                "test render",
            )
            assert render["subject"] == "Planned maintenance for Acme Farms on 2026-12-01"

        # A commit to dev, then `herd promote`, reaches prod.
        origin = Repo(origin=state / "origin" / "origin.git", work=state / "origin" / "work")
        values = yaml.safe_load((ROOT / "apps" / "herd-api" / "values.yaml").read_text())
        values["image"]["tag"] = "7.7.7"
        origin.commit(
            "dev", "herd-api 7.7.7", {"apps/herd-api/values.yaml": yaml.safe_dump(values)}
        )
        promote = herd("promote", state=state)
        assert promote.returncode == 0, promote.stdout + promote.stderr
        with config.new_client_from_config(config_file=env["KUBECONFIG_PROD"]) as api:

            def prod_image() -> str:
                dep = client.AppsV1Api(api).read_namespaced_deployment("herd-api", "herd-system")
                return str(dep.spec.template.spec.containers[0].image)

            wait_for(lambda: prod_image().endswith(":7.7.7"), 120, "prod at 7.7.7")

        status = herd("status", state=state)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "operator-dev" in status.stdout and "herd-system/herd-api" in status.stdout
    finally:
        started = records(state)
        down = run("make", "down", state=state)
        assert down.returncode == 0, down.stdout + down.stderr
    assert started and not any(alive(r) for r in started)  # type: ignore[arg-type]
    assert herd("status", state=state).returncode == 1
