"""Render an Application's source folder into Kubernetes objects.

A folder with a Chart.yaml is a Helm chart, rendered with `helm template` (value files merged
with Helm's semantics: maps merge, lists and scalars are replaced); any other folder is plain
manifests (*.yaml, *.yml, *.json at its top level). Paths never leave the repository.

Everything here comes from git, so it is hostile until checked: YAML aliases are refused (a few
hundred bytes of nested aliases expand to gigabytes), rendered bytes and objects are capped,
and every document must be a mapping with apiVersion, kind and metadata.name.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RenderError(Exception):
    """The source does not render: the message says where and why."""


@dataclass(frozen=True)
class Limits:
    """Caps on what one Application may render (settings app_max_rendered_*)."""

    max_bytes: int = 16 * 1024 * 1024
    max_objects: int = 2000
    max_nodes: int = 2_000_000  # YAML nodes of Helm's output, aliases expanded
    helm_timeout: float = 120


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases before they are expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


class _CountingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the nodes a document expands to (each alias counts its
    anchor's whole subtree) and refusing past a cap, before anything is expanded. For Helm
    output, where anchors are legitimate (CRD schemas use them)."""

    max_nodes = 1_000_000

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._weights: dict[int, int] = {}
        self._total = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        if not alias:  # an alias is its anchor's node, weighed already
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            self._weights[id(node)] = 1 + sum(self._weights.get(id(c), 1) for c in children)
        if parent is None:  # a document's root: what constructing it would expand to
            self._total += self._weights.get(id(node), 1)
            if self._total > self.max_nodes:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"YAML expands to more than {self.max_nodes} nodes",
                    getattr(node, "start_mark", None),
                )
        return node


# libyaml, when PyYAML has it: six times faster than the pure-Python loaders above, which a
# 2,000-object render spent most of its parse time in. Its events are read first (aliases,
# node count) and the documents built only from text that passed.
_CLoader: Any = getattr(yaml, "CSafeLoader", None)


def _scan(text: str, aliases_allowed: bool) -> tuple[bool, int]:
    """Whether `text` has aliases, and its node count, from libyaml's events."""
    nodes, aliases = 0, False
    for event in yaml.parse(text, Loader=_CLoader):
        if isinstance(event, yaml.AliasEvent):
            if not aliases_allowed:
                mark: Any = event.start_mark  # libyaml's own Mark class
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not allowed", mark
                )
            aliases = True
        elif isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
    return aliases, nodes


def load_all(text: str) -> Iterator[Any]:
    """Every document of `text`, refusing aliases (yaml.YAMLError otherwise)."""
    if _CLoader is not None:
        _scan(text, aliases_allowed=False)
        return iter(yaml.load_all(text, Loader=_CLoader))
    return iter(yaml.load_all(text, Loader=_NoAliasLoader))


def load_all_capped(text: str, max_nodes: int) -> Iterator[Any]:
    """Every document of `text`; aliases allowed while the expansion stays under `max_nodes`."""
    if _CLoader is not None:
        aliases, nodes = _scan(text, aliases_allowed=True)
        if not aliases:  # nothing expands: the node count is the expansion
            if nodes > max_nodes:
                raise yaml.composer.ComposerError(
                    None, None, f"YAML expands to more than {max_nodes} nodes", None
                )
            return iter(yaml.load_all(text, Loader=_CLoader))
    loader = type("_Capped", (_CountingLoader,), {"max_nodes": max_nodes})
    return iter(yaml.load_all(text, Loader=loader))


def load(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)


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
    repo: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool = True,
    limits: Limits = Limits(),
) -> list[dict[str, Any]]:
    folder = inside(repo, source.path)
    if not folder.is_dir():
        raise RenderError(f"path {source.path} is not a folder at this revision")
    if (folder / "Chart.yaml").is_file():
        objects = _render_chart(repo, folder, source, namespace, helm, include_crds, limits)
    else:
        objects = _load_manifests(folder, limits)
    if len(objects) > limits.max_objects:
        raise RenderError(
            f"{source.path} renders {len(objects)} objects, more than the limit of "
            f"{limits.max_objects}"
        )
    for obj in objects:
        check_object(obj, source.path)
    return objects


def check_object(obj: Any, where: str) -> None:
    """A Kubernetes object: a mapping with apiVersion, kind and metadata.name (strings)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("apiVersion"), str)
        or not obj["apiVersion"]
        or not isinstance(obj.get("kind"), str)
        or not obj["kind"]
        or not isinstance(meta, dict)
        or not isinstance(meta.get("name"), str)
        or not meta["name"]
    ):
        raise RenderError(
            f"{where}: not an object with apiVersion, kind and metadata.name: "
            f"{json.dumps(obj, default=str)[:200]}"
        )


def _values(repo: Path, folder: Path, source: Source) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for rel in source.value_files:
        path = inside(repo, rel, base=folder)
        if not path.is_file():
            raise RenderError(f"value file {rel} does not exist at this revision")
        try:
            loaded = load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise RenderError(f"value file {rel} is not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise RenderError(f"value file {rel} is not a map")
        values = merge(values, loaded)
    if source.values:
        try:
            inline = load(source.values) or {}
        except yaml.YAMLError as err:
            raise RenderError(f"helm.values is not valid YAML: {err}") from err
        values = merge(values, inline)
    return merge(values, source.values_object)


def _render_chart(
    repo: Path,
    folder: Path,
    source: Source,
    namespace: str,
    helm: Path,
    include_crds: bool,
    limits: Limits,
) -> list[dict[str, Any]]:
    values = _values(repo, folder, source)
    command = [
        str(helm),
        "template",
        source.release_name,
        str(folder),
        "--include-crds" if include_crds else "--skip-crds",
        # `helm test` pods are for `helm test`, never part of what is installed (as with
        # `helm install`): applying them would run the chart's tests on every sync.
        "--skip-tests",
        "--namespace",
        namespace,
        "--values",
        "-",
    ]
    try:
        result = subprocess.run(
            command,
            input=json.dumps(values).encode(),
            capture_output=True,
            timeout=limits.helm_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise RenderError(f"helm template {source.path} timed out") from err
    if result.returncode != 0:
        raise RenderError(
            f"helm template {source.path} failed: {result.stderr.decode(errors='replace').strip()}"
        )
    if len(result.stdout) > limits.max_bytes:
        raise RenderError(
            f"{source.path} renders {len(result.stdout)} bytes, more than the limit of "
            f"{limits.max_bytes}"
        )
    try:
        return [d for d in load_all_capped(result.stdout.decode(), limits.max_nodes) if d]
    except yaml.YAMLError as err:
        raise RenderError(f"helm template {source.path}: output is not valid YAML: {err}") from err


def _load_manifests(folder: Path, limits: Limits) -> list[dict[str, Any]]:
    objects: list[Any] = []
    total = 0
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        total += path.stat().st_size
        if total > limits.max_bytes:
            raise RenderError(
                f"{folder.name}: manifests are larger than the limit of {limits.max_bytes} bytes"
            )
        try:
            docs = list(load_all(path.read_text()))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RenderError(f"{path.name} is not valid YAML: {err}") from err
        for doc in docs:
            if doc is None:
                continue
            if (
                isinstance(doc, dict)
                and str(doc.get("kind", "")).endswith("List")
                and isinstance(doc.get("items"), list)
            ):
                objects.extend(doc["items"])
            else:
                check_object(doc, path.name)
                objects.append(doc)
    return objects
