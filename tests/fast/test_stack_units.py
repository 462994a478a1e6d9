"""What the Stack gives a program, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd_devkit.local.bootstrap import Environment
from herd_devkit.local.process import write_state
from herd_devkit.settings import Settings
from herd_devkit.stack import Stack

RESOURCES = Environment(
    user_pool_id="eu-west-1_pool",
    email_queue_url="http://moto/queue/emails",
    email_dlq_url="http://moto/queue/emails-dlq",
    email_jobs_table="herd-email-jobs",
    email_sender="noreply@herd-itt.com",
    admin_client_id="admin-client",
    logo_raw_bucket="herd-logos-raw",
    logo_bucket="herd-logos",
    thumbnail_queue_url="http://moto/queue/thumbnails",
    thumbnail_dlq_url="http://moto/queue/thumbnails-dlq",
)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    # A moto "running" at a made-up URL: its state file is all program_env reads.
    write_state(tmp_path / "moto" / "moto.json", [], url="http://127.0.0.1:9")
    return Stack(root=tmp_path, settings=Settings(aws_region="eu-west-1"))


def test_a_program_gets_moto_and_its_identity_never_the_shells(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "AKIA-REAL",
        "AWS_SECRET_ACCESS_KEY": "real-secret",
        "AWS_PROFILE": "prod",
        "AWS_CA_BUNDLE": "/etc/ssl/ca.pem",
        "KUBECONFIG": "/home/me/.kube/config",
        "HERD_TENANTS_NAMESPACE": "from-the-shell",
    }.items():
        monkeypatch.setenv(key, value)
    env = stack.program_env(Path("/ids/api.kubeconfig"), RESOURCES, HERD_SIGNUP_BURST="5")
    assert env["KUBECONFIG"] == "/ids/api.kubeconfig"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert env["AWS_ACCESS_KEY_ID"] == "local"
    assert "AWS_PROFILE" not in env and "HERD_TENANTS_NAMESPACE" not in env
    assert env["AWS_CA_BUNDLE"] == "/etc/ssl/ca.pem"  # the machine's CA bundle stays
    assert env["HERD_EMAIL_QUEUE_URL"] == RESOURCES.email_queue_url
    assert env["HERD_SIGNUP_BURST"] == "5"
    proxied = stack.program_env(Path("k"), RESOURCES, endpoint="http://127.0.0.1:7")
    assert proxied["AWS_ENDPOINT_URL"] == "http://127.0.0.1:7"  # a fault proxy in front


def test_without_an_environment_a_program_gets_no_aws_at_all(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    env = stack.program_env(Path("k"), None, HERD_APP_TICK="1")
    assert not [k for k in env if k.startswith("AWS_") and k != "AWS_CA_BUNDLE"]
    assert env["HERD_APP_TICK"] == "1"
