"""What can be checked here of the Docker/kind path (no Docker engine on our machines):
the Dockerfiles parse with BuildKit's own parser and follow our rules, the kind config
parses, the kind values render and install into the real API server, and `make up
CLUSTER=kind` resolves to the kind script."""

from __future__ import annotations

import re
import subprocess
import uuid

import dockerfile
import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from herd_operator.gitops.kubeapply import Applier

from .charts import helm
from .conftest import Cluster
from .helpers import ROOT

IMAGES = {"operator/Dockerfile": "operator", "api/Dockerfile": "api"}


def pinned(name: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name}\s*\?=\s*([0-9.]+)", makefile, re.M)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("path", list(IMAGES))
def test_dockerfile_parses_and_follows_our_rules(path: str) -> None:
    commands = dockerfile.parse_file(str(ROOT / path))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    args = {
        c.value[0].split("=")[0]: c.value[0].split("=", 1)[1]
        for c in commands
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    for stage in stages:
        image = stage.value[0]
        image = args.get(image.strip("${}"), image)
        assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"
    final = commands[commands.index(stages[-1]) :]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    runs = " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    assert "uv sync --frozen --no-dev" in runs
    assert not any(c.cmd == "ADD" for c in commands), "COPY, never ADD of remote files"
    # The operator's children (git, helm, renders) may be orphaned: an init reaps them.
    init = ("/usr/bin/tini", "--") if IMAGES[path] == "operator" else ()
    assert [c.value for c in final if c.cmd == "ENTRYPOINT"] == [(*init, "herd")]
    if init:
        assert " tini" in " ".join(c.value[0] for c in final if c.cmd == "RUN")
    uv = next(c for c in commands if c.cmd == "COPY" and "astral-sh/uv" in "".join(c.flags))
    assert f"uv:{pinned('UV_VERSION')}" in "".join(uv.flags)


@pytest.mark.parametrize("name", ["HELM_VERSION", "K8S_VERSION"])
def test_operator_image_builds_the_pinned_helm_and_kubectl(name: str) -> None:
    """helm renders charts and kubectl Kustomize sources: the image's are the Makefile's."""
    commands = dockerfile.parse_file(str(ROOT / "operator/Dockerfile"))
    arg = next(c.value[0] for c in commands if c.cmd == "ARG" and c.value[0].startswith(name))
    assert arg == f"{name}={pinned(name)}"
    env = " ".join(" ".join(c.value) for c in commands if c.cmd == "ENV")
    assert "HERD_HELM /usr/local/bin/helm" in env or "HERD_HELM=/usr/local/bin/helm" in env
    assert (
        "HERD_KUBECTL=/usr/local/bin/kubectl" in env or "HERD_KUBECTL /usr/local/bin/kubectl" in env
    )


def test_kind_config_parses() -> None:
    conf = yaml.safe_load((ROOT / "clusters/kind/kind-config.yaml").read_text())
    assert (conf["apiVersion"], conf["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    ports = {
        (m["containerPort"], m["hostPort"], m["listenAddress"])
        for n in conf["nodes"]
        for m in n.get("extraPortMappings", [])
    }
    assert ports == {(30080, 8000, "127.0.0.1"), (30500, 5000, "127.0.0.1")}


def test_make_up_cluster_kind_runs_the_kind_script() -> None:
    up = subprocess.run(
        ["make", "-n", "up", "CLUSTER=kind"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "hack/kind-up.sh" in up and "herd up" not in up
    down = subprocess.run(
        ["make", "-n", "down", "CLUSTER=kind"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "delete cluster --name herd" in down


@pytest.mark.slow
def test_kind_values_install_into_the_api_server(cluster: Cluster, api: ApiClient) -> None:
    ns = f"kind-{uuid.uuid4().hex[:6]}"
    kube = ["--kubeconfig", str(cluster.kubeconfig), "-n", ns]
    sets = {
        "herd-operator": [
            "--set",
            "config.cognitoUserPoolId=eu-west-1_kind",
            "--set",
            "config.emailQueueUrl=http://moto:5000/q",
        ],
        "herd-api": ["--set", "config.cognitoUserPoolId=eu-west-1_kind"],
        "herd-workers": ["--set", "config.emailQueueUrl=http://moto:5000/q"],
    }
    # The API's Role lives in the tenants' namespace, which the platform makes (make up, the
    # operator's bootstrap); this test may run before any other made it.
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name="tenants"))
        )
    except client.ApiException as e:
        if e.status != 409:
            raise
    releases = []
    try:
        for chart, extra in sets.items():
            release = f"{chart}-{uuid.uuid4().hex[:4]}"
            result = helm(
                "install",
                release,
                f"charts/{chart}",
                *kube,
                "--create-namespace",
                "-f",
                f"clusters/kind/values/{chart}.yaml",
                *extra,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            releases.append(release)
        deployments = client.AppsV1Api(api).list_namespaced_deployment(ns).items
        images = {d.spec.template.spec.containers[0].image for d in deployments}
        assert images == {"herd/operator:local", "herd/api:local"}
        env = {
            e.name: e.value
            for d in deployments
            for e in d.spec.template.spec.containers[0].env or []
        }
        assert env["AWS_ENDPOINT_URL"] == "http://moto.herd-system:5000"
        # The in-cluster moto manifest is accepted by the API server too.
        applier = Applier(api, field_manager="test")
        for doc in yaml.safe_load_all((ROOT / "clusters/kind/moto.yaml").read_text()):
            applier.apply(doc, dry_run=doc["kind"] != "Namespace")
    finally:
        for release in releases:
            helm("uninstall", release, *kube, check=False)
        client.CoreV1Api(api).delete_namespace(ns)
