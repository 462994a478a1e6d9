"""`make validate`: render every app of every environment and validate it against the real
API server of the pinned Kubernetes version (server-side dry run, CRDs installed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient

from herd_core.constants import GROUP
from herd_devkit.local.gitops import ensure_namespace
from herd_operator.gitops.kubeapply import Applier, ApplyError, describe
from herd_operator.gitops.render import RenderError, Source, render

ENVIRONMENTS = ("dev", "prod")


@dataclass
class RenderedApp:
    env: str
    name: str
    namespace: str
    objects: list[dict[str, Any]]


def environment_apps(repo: Path, env: str, helm: Path) -> list[RenderedApp]:
    """The root Application of clusters/<env>, then every Application it renders."""
    root = yaml.safe_load((repo / "clusters" / env / "root.yaml").read_text())
    apps = [RenderedApp(env, "root", root["spec"]["destination"]["namespace"], [root])]
    children = render(
        repo, Source.from_spec(root["spec"], "root"), root["spec"]["destination"]["namespace"], helm
    )
    for child in children:
        if child["kind"] != "Application" or not child["apiVersion"].startswith(GROUP):
            continue
        name, spec = child["metadata"]["name"], child["spec"]
        namespace = spec["destination"]["namespace"]
        objects = render(repo, Source.from_spec(spec, name), namespace, helm)
        apps.append(RenderedApp(env, name, namespace, objects))
    apps[0].objects = [root, *children]
    return apps


def write(apps: list[RenderedApp], out: Path) -> list[Path]:
    written = []
    for app in apps:
        path = out / app.env / f"{app.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(app.objects, sort_keys=False))
        written.append(path)
    return written


def dry_run(api: ApiClient, apps: list[RenderedApp]) -> list[str]:
    """Server-side dry run of every object; namespaces are created for real first (the
    cluster is a throwaway). Returns the errors."""
    applier = Applier(api, field_manager="herd-validate")
    errors: list[str] = []
    for app in apps:
        for obj in app.objects:
            if obj["kind"] == "CustomResourceDefinition":
                continue  # installed from charts/herd-operator/crds before the run
            try:
                if applier.namespaced(obj):
                    obj = {
                        **obj,
                        "metadata": {
                            **obj["metadata"],
                            "namespace": obj["metadata"].get("namespace") or app.namespace,
                        },
                    }
                    ensure_namespace(api, obj["metadata"]["namespace"])
                applier.apply(obj, dry_run=True)
            except ApplyError as err:
                errors.append(f"{app.env}/{app.name}: {err}")
    return errors


def render_all(repo: Path, helm: Path) -> tuple[list[RenderedApp], list[str]]:
    apps, errors = [], []
    for env in ENVIRONMENTS:
        try:
            apps += environment_apps(repo, env, helm)
        except RenderError as err:
            errors.append(f"{env}: {err}")
    return apps, errors


__all__ = ["RenderedApp", "describe", "dry_run", "environment_apps", "render_all", "write"]
