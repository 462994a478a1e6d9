"""Write our CRDs from the models in herd_core.models (`make manifests`, `herd manifests`).

The model's JSON schema (pydantic) becomes a Kubernetes structural schema: $refs inlined,
`X | None` becomes X (the API server prunes a null of a non-nullable field, so null means
"absent" there as in the model), free-form objects keep their unknown fields, `extra="allow"`
keeps them too, and what pydantic cannot say (CEL rules, list types, formats) comes from the
models' `json_schema_extra`. Names, scope, columns and subresources come from `Model.crd`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from herd_core.constants import GROUP, VERSION
from herd_core.models import RESOURCES, Resource

CRD_DIR = Path("charts") / "herd-operator" / "crds"
GENERATED = (
    "# Generated from herd_core.models.{kind} by `make manifests`: edit the model, not this file."
)

# Keys in the order a reader looks for them; the rest follow.
_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "items",
    "properties",
    "additionalProperties",
)
_DROP = frozenset({"title", "examples", "$defs"})
RULES = "x-kubernetes-validations"
RULE_KEYS = ("rule", "messageExpression", "message", "reason", "fieldPath", "optionalOldSelf")


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON-schema node of pydantic's as a Kubernetes structural schema node."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return _merge(structural(target, defs), structural(node, defs))
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            branches = [b for b in node.pop(key) if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"not expressible in a structural schema: {key} of {branches}")
            return _merge(structural(branches[0], defs), structural(node, defs))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap; kubectl explain re-wraps
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if value is True:  # extra="allow", dict[str, Any]: keep what we do not name
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = structural(value, defs)
            # False (extra="forbid"): the API server prunes unknown fields and kubectl's strict
            # field validation refuses them; structural schemas have no other way to say it.
        else:
            out[key] = value
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & set(out):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return _ordered(out)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A referenced schema with what the referring field adds; both sides' rules apply."""
    out = {**base, **over}
    if RULES in base and RULES in over:
        out[RULES] = base[RULES] + over[RULES]
    return _ordered(out)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = [k for k in _ORDER if k in node]
    return {k: node[k] for k in first + [k for k in node if k not in _ORDER]}


def openapi_schema(resource: type[Resource]) -> dict[str, Any]:
    raw = resource.model_json_schema(mode="validation")
    schema = structural(raw, raw.get("$defs", {}))
    own = {k: v for k, v in schema["properties"].items() if k not in ("apiVersion", "kind")}
    own.pop("metadata")
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},  # the API server's own ObjectMeta schema applies
        **own,
    }
    schema["required"] = [r for r in schema.get("required", []) if r in own]
    return schema


def crd(resource: type[Resource]) -> dict[str, Any]:
    info, kind = resource.crd, resource.__name__
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if info.status_subresource:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = [
        {
            "name": c.name,
            "type": c.type,
            "jsonPath": c.json_path,
            **({"priority": c.priority} if c.priority else {}),
        }
        for c in info.columns
    ]
    version["schema"] = {"openAPIV3Schema": openapi_schema(resource)}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": info.scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": info.plural,
                "singular": kind.lower(),
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [version],
        },
    }


class _Flow(dict[str, Any]):
    pass


class _FlowList(list[Any]):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)
_Dumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


_SCALAR = (str, int, float, bool, type(None))


def _compact(value: Any, indent: int = 0, schema: bool = False) -> Any:
    """Lists of scalars, and the schema's leaf nodes when they fit, on one line, as a person
    writes a CRD."""
    if isinstance(value, list):
        if value and all(isinstance(v, _SCALAR) for v in value):
            return _FlowList(value)
        return [_compact(v, indent + 2, schema) for v in value]
    if not isinstance(value, dict):
        return value
    if "rule" in value and set(value) <= set(RULE_KEYS):  # pydantic sorted its keys
        return {k: value[k] for k in RULE_KEYS if k in value}
    leaf = all(
        isinstance(v, _SCALAR) or (isinstance(v, list) and all(isinstance(i, _SCALAR) for i in v))
        for v in value.values()
    )
    if schema and value and leaf and "description" not in value:
        flow = _Flow(value)
        text = yaml.dump(flow, Dumper=_Dumper, width=4096).strip()
        if indent + 30 + len(text) <= 100:  # 30: room for the key in front
            return flow
    return {k: _compact(v, indent + 2, schema or k == "openAPIV3Schema") for k, v in value.items()}


def render(resource: type[Resource]) -> str:
    doc = " ".join((resource.__doc__ or "").split())
    about = f"{resource.__name__}: {doc} {resource.crd.comment}".strip()
    header = [GENERATED.format(kind=resource.__name__)]
    header += textwrap.wrap(about, 98, initial_indent="# ", subsequent_indent="# ")
    body = yaml.dump(
        _compact(crd(resource)), Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True
    )
    return "\n".join(header) + "\n" + body


def filename(resource: type[Resource]) -> str:
    return f"{GROUP}_{resource.crd.plural}.yaml"


def stale(crd_dir: Path) -> list[Path]:
    """The files of crd_dir that differ from what the models make (missing ones included)."""
    return [
        crd_dir / filename(r)
        for r in RESOURCES
        if not (crd_dir / filename(r)).is_file() or (crd_dir / filename(r)).read_text() != render(r)
    ]


def write(crd_dir: Path) -> list[Path]:
    """Write every CRD the models define into crd_dir; the files that changed."""
    changed = stale(crd_dir)
    crd_dir.mkdir(parents=True, exist_ok=True)
    for resource in RESOURCES:
        path = crd_dir / filename(resource)
        if path in changed:
            path.write_text(render(resource))
    return changed
