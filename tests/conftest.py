"""Session-wide real parts: one embedded control plane (or USE_EXISTING_CLUSTER), one moto
server; a fresh namespace and fresh git repositories per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from herd_operator.local.controlplane import ControlPlane
from herd_operator.local.gitrepo import Repo
from herd_operator.local.moto_server import MotoServer
from herd_operator.local.process import wait_until
from herd_operator.settings import Settings, get_settings
from kubernetes import client, config
from kubernetes.client import ApiClient


@dataclass
class Cluster:
    kubeconfig: Path
    embedded: ControlPlane | None  # None when the tests run against an existing cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    s = get_settings()
    if s.use_existing_cluster:
        if not s.kubeconfig:
            pytest.fail("USE_EXISTING_CLUSTER=true needs KUBECONFIG")
        yield Cluster(kubeconfig=s.kubeconfig, embedded=None)
        return
    root = tmp_path_factory.mktemp("cluster")
    cp = ControlPlane.named("test", settings=s.model_copy(update={"state_dir": root}))
    cp.start()
    try:
        yield Cluster(kubeconfig=cp.kubeconfig, embedded=cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[ApiClient]:
    with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted (with everything in it) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount controller makes `default` shortly after; some tests need it.
    wait_until(lambda: bool(core.list_namespaced_service_account(name).items), 30)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(root=tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_settings(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing every boto3 client at a freshly reset moto; no retries of moto's 500s."""
    moto.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return get_settings().model_copy(
        update={"aws_endpoint_url": moto.url, "aws_region": "eu-west-1", "aws_max_attempts": 1}
    )


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A real bare repository with `main` and `dev` at the same first commit."""
    return Repo.create(tmp_path / "repo", {"README.md": "# test repo\n"})
