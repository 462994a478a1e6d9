"""Helpers for chart tests: helm runs, rendered workloads, README security exceptions."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from herd_devkit.local.tools import binary

from .helpers import ROOT


def _is_library(chart_yaml: Path) -> bool:
    return bool(yaml.safe_load(chart_yaml.read_text()).get("type") == "library")


# Installable charts; library charts (herd-lib) only lend templates to them.
CHARTS = sorted(p.parent.name for p in (ROOT / "charts").glob("*/Chart.yaml") if not _is_library(p))
LIBRARIES = sorted(p.parent.name for p in (ROOT / "charts").glob("*/Chart.yaml") if _is_library(p))
OURS = [c for c in CHARTS if c.startswith("herd-")]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
SETTINGS = ("runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "capabilities")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("helm")), *args], capture_output=True, text=True, check=check, cwd=ROOT
    )


def ci_values(chart: str) -> list[Path]:
    return sorted((ROOT / "charts" / chart / "ci").glob("*-values.yaml"))


def template(chart: str, *args: str) -> list[dict[str, Any]]:
    out = helm("template", "t", f"charts/{chart}", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] not in WORKLOADS:
        return None
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def containers(obj: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    spec = pod_spec(obj)
    if spec is None:
        return
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        yield spec, c


def effective(pod: dict[str, Any], container: dict[str, Any], setting: str) -> Any:
    ctx, pod_ctx = container.get("securityContext") or {}, pod.get("securityContext") or {}
    if setting == "runAsNonRoot":
        return ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if setting == "capabilities":
        return "ALL" in ((ctx.get("capabilities") or {}).get("drop") or [])
    return ctx.get(setting)


def violations(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    bad = set()
    if effective(pod, container, "runAsNonRoot") is not True:
        bad.add("runAsNonRoot")
    if effective(pod, container, "readOnlyRootFilesystem") is not True:
        bad.add("readOnlyRootFilesystem")
    if effective(pod, container, "allowPrivilegeEscalation") is not False:
        bad.add("allowPrivilegeEscalation")
    if not effective(pod, container, "capabilities"):
        bad.add("capabilities")
    return bad


def readme_exceptions(chart: str) -> set[tuple[str, str, str]]:
    """(workload, container, setting) rows of the README's `## Security exceptions` table."""
    text = (ROOT / "charts" / chart / "README.md").read_text()
    match = re.search(r"^## Security exceptions\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        return set()
    rows = set()
    for line in match.group(1).splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("Workload", "") and not cells[0].startswith("-"):
            rows.add((cells[0], cells[1], cells[2]))
    return rows


def component(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name"))
