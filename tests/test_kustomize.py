"""Kustomize sources through the real parts (issue 34): a folder with a kustomization.yaml is
built by kubectl's kustomize in the render child, its base in `../base` checked out beside it
(the checkout is sparse), spec.source.kustomize applied as Argo's `kustomize edit`; and
hostile kustomizations (`../` out of the repository, a remote base, a symlink out of the
checkout, a generator reading gigabytes) fail only their own Application, with a message
that says why, while the same operator process syncs the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo, git

from .applications import (
    PLURAL,
    app_status,
    application,
    cm,
    comparison_error,
    configmap,
    synced_at,
)
from .helpers import Custom, OperatorProcess, same_process, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")


DEPLOYMENT = json.dumps(
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.0"}]},
            },
        },
    }
)


BASE = {
    "base/kustomization.yaml": "resources: [cm.yaml, deploy.yaml]\n",
    "base/cm.yaml": configmap("settings", {"k": "v"}),
    "base/deploy.yaml": DEPLOYMENT,
    "overlay/kustomization.yaml": "resources: [../base]\nnamePrefix: o-\n",
}


def test_kustomization_with_a_base_and_argo_edits(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n", "other/x.yaml": "x: 1\n"})
    sha = repo.commit("dev", "base and overlay", BASE)
    # The overlay's folder alone is checked out first: its base in ../base is added.
    application(objects, "plain", repo, "overlay", namespace)
    application(
        objects,
        "edited",
        repo,
        "overlay",
        namespace,
        kustomize={
            "namePrefix": "e-",  # replaces the overlay's own, as `kustomize edit` does
            "nameSuffix": "-s",
            "images": ["nginx=registry.example/nginx:2.0"],
            "commonLabels": {"team": "blue"},
            "commonAnnotations": {"owner": "ops"},
            "replicas": [{"name": "web", "count": 3}],
            "patches": [
                {
                    "patch": '[{"op": "add", "path": "/data/patched", "value": "yes"}]',
                    "target": {"kind": "ConfigMap"},
                }
            ],
        },
    )
    synced_at(objects, "plain", sha)
    synced_at(objects, "edited", sha)
    plain = cm(api, namespace, "o-settings")
    assert plain is not None and plain.data == {"k": "v"}
    apps = client.AppsV1Api(api)
    assert apps.read_namespaced_deployment("o-web", namespace).spec.replicas == 1

    edited = cm(api, namespace, "e-settings-s")
    assert edited is not None
    assert edited.data == {"k": "v", "patched": "yes"}
    assert edited.metadata.labels["team"] == "blue"
    assert edited.metadata.annotations["owner"] == "ops"
    deploy = apps.read_namespaced_deployment("e-web-s", namespace)
    assert deploy.spec.replicas == 3
    assert deploy.spec.template.spec.containers[0].image == "registry.example/nginx:2.0"
    assert deploy.spec.selector.match_labels == {"app": "web", "team": "blue"}
    # The edits were made on a copy: the plain Application's objects are as committed.
    assert cm(api, namespace, "o-settings-s") is None

    # A change in the base (outside the Application's folder) reaches both.
    sha2 = repo.commit("dev", "base changes", {"base/cm.yaml": configmap("settings", {"k": "2"})})
    synced_at(objects, "plain", sha2)
    synced_at(objects, "edited", sha2)
    assert (cm(api, namespace, "o-settings") or client.V1ConfigMap()).data == {"k": "2"}


def test_hostile_kustomizations_fail_only_their_own_application(
    objects: Custom,
    api: ApiClient,
    namespace: str,
    tmp_path: Path,
    live_operator: OperatorProcess,
) -> None:
    same_operator = same_process(live_operator)
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    generator = "configMapGenerator:\n- name: big\n  files:\n" + "".join(
        f"  - k{i}=blob\n" for i in range(12)
    )
    files = {
        # A folder of the operator's disk, through ../ from the kustomization.
        "escape/kustomization.yaml": "resources: [../../../../../../../../etc/herd]\n",
        # A file beside a base, through ../ (kustomize's own root-only restriction).
        "sideways/kustomization.yaml": "resources: [../good/cm.yaml]\n",
        "remote/kustomization.yaml": (
            "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/"
            "helloWorld?ref=v1.0.6\n"
        ),
        "gitbase/kustomization.yaml": (
            "resources: [git@github.com:kubernetes-sigs/kustomize.git/examples]\n"
        ),
        "helmy/kustomization.yaml": (
            "helmCharts:\n- name: redis\n  repo: https://charts.bitnami.com/bitnami\n"
        ),
        # 12 x 2 MiB read by one generator: past the operator's 16 MiB per Application.
        "huge/kustomization.yaml": generator,
        "huge/blob": "a" * (2 * 1024 * 1024),
        "link/kustomization.yaml": "resources: [cm.yaml]\n",
        "good/kustomization.yaml": "resources: [cm.yaml]\n",
        "good/cm.yaml": configmap("good", {"k": "v"}),
    }
    repo.commit("dev", "hostile kustomizations", files)
    # A symlink to a file of the operator's disk, as a resource (the work tree is at dev).
    os.symlink("/etc/hostname", repo.work / "link" / "cm.yaml")
    git("add", "--all", cwd=repo.work)
    git("commit", "-m", "symlink out", cwd=repo.work)
    git("push", "origin", "dev:dev", cwd=repo.work)
    sha = repo.head("dev")

    expected = {
        "escape": "resources '../../../../../../../../etc/herd' leaves the repository",
        "sideways": "is not in or below 'sideways'",
        "remote": "is remote: only paths inside the repository are allowed",
        "gitbase": "is remote: only paths inside the repository are allowed",
        "helmy": "helmCharts: kustomize's Helm inflation is not supported",
        "huge": "the files it reads are larger than the limit of 16777216 bytes",
        "link": "symlink link/cm.yaml points outside the repository",
    }
    for name in [*expected, "good"]:
        application(objects, name, repo, name, namespace)
    synced_at(objects, "good", sha)
    assert (cm(api, namespace, "good") or client.V1ConfigMap()).data == {"k": "v"}
    for name, words in expected.items():
        message = wait_for(lambda n=name: comparison_error(objects, n), 60, f"{name} refused")
        assert words in message, (name, message)
        assert str(tmp_path) not in message  # paths as the repository names them
        assert (app_status(objects, name).get("sync") or {}).get("status") != "Synced"
    assert same_operator()

    # The same operator goes on syncing: the next commit of the good one lands.
    sha2 = repo.commit("dev", "good changes", {"good/cm.yaml": configmap("good", {"k": "2"})})
    synced_at(objects, "good", sha2)
    assert (cm(api, namespace, "good") or client.V1ConfigMap()).data == {"k": "2"}


def test_crd_refuses_two_source_kinds_and_jsonnet(objects: Custom, namespace: str) -> None:
    custom = objects.api
    base = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Application",
        "spec": {
            "project": f"p-{namespace}",
            "source": {"repoURL": "https://example.com/r.git", "path": "a"},
            "destination": {"namespace": namespace},
        },
    }
    both = json.loads(json.dumps(base))
    both["metadata"] = {"name": "both"}
    both["spec"]["source"].update(kustomize={"namePrefix": "a-"}, directory={"recurse": True})
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, both)
    assert "set at most one of helm, kustomize and directory" in str(err.value.body)
    jsonnet = json.loads(json.dumps(base))
    jsonnet["metadata"] = {"name": "jsonnet"}
    jsonnet["spec"]["source"]["directory"] = {"jsonnet": {"tlas": []}}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, jsonnet, field_validation="Strict"
        )
    assert "jsonnet" in str(err.value.body)
