"""What every custom resource model shares: the CRD facts a JSON schema cannot say (names,
scope, printer columns), Kubernetes' schema extensions (CEL rules, list types), conditions.

The models are the one source of our CRDs: `make manifests` (herd_devkit.manifests) writes
charts/herd-operator/crds/ from them, so a rule written here is checked by pydantic and by
the API server at admission alike. Rules pydantic cannot check (CEL with `oldSelf`) are
declared with `k8s(cel(...))` and live in the CRD only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from herd_core.constants import API_VERSION


@dataclass(frozen=True)
class Column:
    """An additionalPrinterColumn of `kubectl get`."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


# JSONPaths of printer columns: the Ready and Synced conditions.
READY, SYNCED = '.status.conditions[?(@.type=="Ready")]', '.status.conditions[?(@.type=="Synced")]'


@dataclass(frozen=True)
class CRD:
    """What the CRD says besides the schema. Kind, singular and list kind follow the class name."""

    plural: str
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    scope: Literal["Namespaced", "Cluster"] = "Namespaced"
    status_subresource: bool = True
    categories: tuple[str, ...] = ("herd",)
    # The generated file's header comment: what the kind is for, for a reader of the chart.
    comment: str = ""


def cel(rule: str, message: str = "", *, message_expression: str = "") -> dict[str, str]:
    """One x-kubernetes-validations rule (Kubernetes CEL)."""
    out = {"rule": rule}
    if message:
        out["message"] = message
    if message_expression:
        out["messageExpression"] = message_expression
    return out


def k8s(
    *rules: dict[str, str],
    list_type: Literal["atomic", "set", "map"] | None = None,
    map_keys: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Kubernetes' schema extensions of a field or model, for `json_schema_extra`."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    if list_type:
        out["x-kubernetes-list-type"] = list_type
    if map_keys:
        out["x-kubernetes-list-map-keys"] = list(map_keys)
    return out


def immutable(field: str, hint: str = "") -> dict[str, str]:
    return cel("self == oldSelf", f"spec.{field} is immutable{hint}")


# Types in the Kubernetes shapes.
Generation = Annotated[int, Field(json_schema_extra={"format": "int64"})]
Timestamp = dt.datetime  # RFC 3339 in the object: {type: string, format: date-time}
DeletionPolicy = Literal["Delete", "Retain"]
# A Go duration of whole seconds, minutes or hours, as the operator parses them.
DURATION_PATTERN = r"^[0-9]+(s|m|h)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECURE_URL = cel(
    "self.startsWith('https://') || self.startsWith('http://localhost')",
    "must be https (http only for localhost)",
)
# The name of an object (most kinds): a DNS subdomain.
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
CallbackURL = Annotated[str, Field(max_length=1024, json_schema_extra=k8s(SECURE_URL))]


class Spec(BaseModel):
    """A spec: unknown fields are an error, as kubectl's strict field validation says."""

    model_config = ConfigDict(extra="forbid")


class Status(BaseModel):
    """A status, written by the operator (and the worker)."""


class Condition(BaseModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    observedGeneration: Generation | None = None
    lastTransitionTime: Timestamp | None = None


# The conditions of a status: one per type (server-side apply merges them by type).
Conditions = Annotated[
    list[Condition] | None, Field(json_schema_extra=k8s(list_type="map", map_keys=("type",)))
]


class Resource(BaseModel):
    """A custom resource: the object as the API server holds it."""

    crd: ClassVar[CRD]

    apiVersion: str = API_VERSION
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _is_this_kind(cls, value: str) -> str:
        if value != cls.__name__:
            raise ValueError(f"kind must be {cls.__name__}")
        return value
