"""Helm parameters, chart dependencies and Argo's `directory` through the real parts (issue
34): Applications synced from a real repository by the operator process into the API server.
A chart's `file://` dependencies in the repository (outside its folder: the sparse checkout
adds them) and vendored charts/*.tgz render with no network; a dependency from a chart
repository, or a `file://` one out of the repository, fails its own Application with a
message that says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from herd_devkit.local.gitrepo import Repo, git

from .applications import app_status, application, cm_data, comparison_error, configmap, synced_at
from .helpers import Custom, wait_for

pytestmark = pytest.mark.usefixtures("live_operator", "project")


def chart_yaml(name: str, dependencies: list[dict[str, str]] | None = None) -> str:
    meta: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": "0.1.0"}
    if dependencies:
        meta["dependencies"] = dependencies
    return json.dumps(meta)


def cm_template(name: str, data: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}\n"


def test_helm_parameters_override_values(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    template = cm_template(
        "params",
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  list: {{ .Values.list | toJson | quote }}\n"
        "  port: {{ .Values.port | toJson | quote }}\n"
        "  nested: {{ .Values.a.b | quote }}",
    )
    sha = repo.commit(
        "dev",
        "chart",
        {
            "chart/Chart.yaml": chart_yaml("params"),
            "chart/values.yaml": "greeting: hello\nlist: []\nport: 1\na: {b: x}\n",
            "chart/templates/cm.yaml": template,
        },
    )
    application(
        objects,
        "params",
        repo,
        "chart",
        namespace,
        helm={
            "values": "greeting: from-values\n",
            "parameters": [
                {"name": "greeting", "value": "hi, there"},  # the comma stays a comma
                {"name": "list", "value": "{1,2}"},  # a list, as helm --set reads it
                {"name": "port", "value": "8080", "forceString": True},
                {"name": "a.b", "value": "y"},
            ],
        },
    )
    synced_at(objects, "params", sha)
    assert cm_data(api, namespace, "params") == {
        "greeting": "hi, there",
        "list": "[1,2]",
        "port": '"8080"',
        "nested": "y",
    }


def package(chart: Path, out: Path) -> Path:
    helm = os.environ.get("HERD_HELM") or shutil.which("helm")
    assert helm, "helm"
    subprocess.run([helm, "package", str(chart), "-d", str(out)], check=True, capture_output=True)
    return next(out.glob("*.tgz"))


def test_chart_dependencies_local_and_vendored(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    # A chart packaged elsewhere, vendored as charts/*.tgz (its repository never asked).
    vendored = tmp_path / "vendored"
    (vendored / "templates").mkdir(parents=True)
    (vendored / "Chart.yaml").write_text(chart_yaml("vendored"))
    (vendored / "templates" / "cm.yaml").write_text(cm_template("vendored", "  k: v"))
    tgz = package(vendored, tmp_path / "out")
    files = {
        "charts/lib/Chart.yaml": chart_yaml(
            "lib", [{"name": "leaf", "version": "0.1.0", "repository": "file://../leaf"}]
        ),
        "charts/lib/values.yaml": "word: lib-default\n",
        "charts/lib/templates/cm.yaml": cm_template("lib", "  word: {{ .Values.word | quote }}"),
        "charts/leaf/Chart.yaml": chart_yaml("leaf"),
        "charts/leaf/templates/cm.yaml": cm_template("leaf", "  k: v"),
        "apps/web/Chart.yaml": chart_yaml(
            "web",
            [
                {"name": "lib", "version": "0.1.0", "repository": "file://../../charts/lib"},
                {
                    "name": "vendored",
                    "version": "0.1.0",
                    "repository": "https://charts.example.com",
                },
            ],
        ),
        "apps/web/values.yaml": "lib: {word: from-parent}\n",
        "apps/web/templates/cm.yaml": cm_template("web", "  k: v"),
        "apps/remote/Chart.yaml": chart_yaml(
            "remote",
            [{"name": "redis", "version": "1.0.0", "repository": "https://charts.example.com"}],
        ),
        "apps/remote/templates/cm.yaml": cm_template("remote", "  k: v"),
        "apps/escape/Chart.yaml": chart_yaml(
            "escape",
            [{"name": "x", "version": "0.1.0", "repository": "file://../../../../../../etc"}],
        ),
        "apps/escape/templates/cm.yaml": cm_template("escape", "  k: v"),
    }
    repo.commit("dev", "charts", files)
    (repo.work / "apps" / "web" / "charts").mkdir()
    shutil.copy(tgz, repo.work / "apps" / "web" / "charts" / tgz.name)
    git("add", "--all", cwd=repo.work)
    git("commit", "-m", "vendor", cwd=repo.work)
    git("push", "origin", "dev:dev", cwd=repo.work)
    sha = repo.head("dev")

    application(objects, "web", repo, "apps/web", namespace)
    application(objects, "remote", repo, "apps/remote", namespace)
    application(objects, "escape", repo, "apps/escape", namespace)
    synced_at(objects, "web", sha)
    assert cm_data(api, namespace, "web") == {"k": "v"}
    assert cm_data(api, namespace, "lib") == {"word": "from-parent"}
    assert cm_data(api, namespace, "leaf") == {"k": "v"}  # the dependency's own dependency
    assert cm_data(api, namespace, "vendored") == {"k": "v"}

    message = wait_for(lambda: comparison_error(objects, "remote"), 60, "remote refused")
    assert "dependency redis from repository 'https://charts.example.com'" in message, message
    assert "Herd fetches no chart repository" in message
    message = wait_for(lambda: comparison_error(objects, "escape"), 60, "escape refused")
    assert "leaves the repository" in message, message
    assert cm_data(api, namespace, "remote") is None and cm_data(api, namespace, "escape") is None


def test_directory_recurse_include_exclude(
    objects: Custom, api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    repo = Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})
    sha = repo.commit(
        "dev",
        "manifests",
        {
            "m/a.yaml": configmap("a", {"k": "a"}),
            "m/b.yaml": configmap("b", {"k": "b"}),
            "m/x.yaml": configmap("x", {"k": "x"}),
            "m/sub/c.yaml": configmap("c", {"k": "c"}),
            "m/sub/d.yaml": configmap("d", {"k": "d"}),
            "m/sub/deeper/e.yml": configmap("e", {"k": "e"}),
            "m/notes.txt": "not a manifest\n",
        },
    )
    # Only the top level (Argo's default), the two files named.
    application(objects, "top", repo, "m", namespace, directory={"include": "{a.yaml,b.yaml}"})
    synced_at(objects, "top", sha)
    names = {r["name"] for r in app_status(objects, "top")["resources"]}
    assert names == {"a", "b"}
    # Subfolders too; `*` crosses folders, as in Argo; d left out.
    application(
        objects,
        "deep",
        repo,
        "m",
        namespace,
        directory={"recurse": True, "include": "{x.yaml,sub/*}", "exclude": "*d.yaml"},
    )
    st = synced_at(objects, "deep", sha)
    assert {r["name"] for r in st["resources"]} == {"x", "c", "e"}
    assert cm_data(api, namespace, "e") == {"k": "e"}
