"""Render an Application's source folder into Kubernetes objects.

A folder with a Chart.yaml is a Helm chart, rendered with `helm template` through pyhelm3
(value files merged with Helm's semantics: maps merge, lists and scalars are replaced);
any other folder is plain manifests (*.yaml, *.yml, *.json at its top level). Paths never
leave the repository.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyhelm3 import Client
from pyhelm3.errors import Error as HelmError


class RenderError(Exception):
    """The source does not render: the message says where and why."""


@dataclass(frozen=True)
class Source:
    path: str
    value_files: tuple[str, ...] = ()
    values: str | None = None
    values_object: Mapping[str, Any] = field(default_factory=dict)
    release_name: str = ""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], name: str) -> Source:
        src = spec.get("source") or {}
        helm = src.get("helm") or {}
        return cls(
            path=src.get("path", "."),
            value_files=tuple(helm.get("valueFiles") or ()),
            values=helm.get("values"),
            values_object=helm.get("valuesObject") or {},
            release_name=helm.get("releaseName") or name,
        )


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value merge: nested maps merge, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def inside(root: Path, relative: str | Path, base: Path | None = None) -> Path:
    path = ((base or root) / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise RenderError(f"{relative} leaves the repository")
    return path


def render(
    repo: Path, source: Source, namespace: str, helm: Path, include_crds: bool = True
) -> list[dict[str, Any]]:
    folder = inside(repo, source.path)
    if not folder.is_dir():
        raise RenderError(f"path {source.path} is not a folder at this revision")
    if (folder / "Chart.yaml").is_file():
        objects = _render_chart(repo, folder, source, namespace, helm, include_crds)
    else:
        objects = _load_manifests(folder)
    for obj in objects:
        if (
            not isinstance(obj, dict)
            or not obj.get("apiVersion")
            or not obj.get("kind")
            or not (obj.get("metadata") or {}).get("name")
        ):
            raise RenderError(
                f"{source.path}: an object without apiVersion, kind or name: "
                f"{json.dumps(obj)[:200]}"
            )
    return objects


def _values(repo: Path, folder: Path, source: Source) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for rel in source.value_files:
        path = inside(repo, rel, base=folder)
        if not path.is_file():
            raise RenderError(f"value file {rel} does not exist at this revision")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise RenderError(f"value file {rel} is not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise RenderError(f"value file {rel} is not a map")
        values = merge(values, loaded)
    if source.values:
        try:
            inline = yaml.safe_load(source.values) or {}
        except yaml.YAMLError as err:
            raise RenderError(f"helm.values is not valid YAML: {err}") from err
        values = merge(values, inline)
    return merge(values, source.values_object)


def _render_chart(
    repo: Path, folder: Path, source: Source, namespace: str, helm: Path, include_crds: bool
) -> list[dict[str, Any]]:
    values = _values(repo, folder, source)

    async def run() -> list[dict[str, Any]]:
        client = Client(executable=str(helm))
        chart = await client.get_chart(folder)
        docs = await client.template_resources(
            chart, source.release_name, values, namespace=namespace, include_crds=include_crds
        )
        # `helm test` pods are for `helm test`, never part of what is installed (as with
        # `helm install`): applying them would run the chart's tests on every sync.
        return [d for d in docs if d and not _is_helm_test(d)]

    try:
        return asyncio.run(run())
    except HelmError as err:
        raise RenderError(f"helm template {source.path} failed: {str(err).strip()}") from err


def _is_helm_test(doc: dict[str, Any]) -> bool:
    hooks = ((doc.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(h.strip().startswith("test") for h in str(hooks).split(","))


def _load_manifests(folder: Path) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as err:
            raise RenderError(f"{path.name} is not valid YAML: {err}") from err
        for doc in docs:
            if doc is None:
                continue
            if doc.get("kind", "").endswith("List") and "items" in doc:
                objects.extend(doc["items"])
            else:
                objects.append(doc)
    return objects
