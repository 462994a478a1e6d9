"""Install our CRDs from the operator chart's crds/ folder, their one source."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_devkit.local.process import wait_until


def install(api: ApiClient, crd_dir: Path, timeout: float = 60) -> list[str]:
    """Create or replace every CRD in `crd_dir` and wait until each is Established.

    Helm never upgrades crds/, so this (and `make bootstrap`) is how ours get upgraded.
    """
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        names.append(name)
        try:
            current = ext.read_custom_resource_definition(name)
        except ApiException as err:
            if err.status != 404:
                raise
            ext.create_custom_resource_definition(crd)
        else:
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
            ext.replace_custom_resource_definition(name, crd)

    def established() -> bool:
        for name in names:
            status = ext.read_custom_resource_definition(name).status
            conds = (status and status.conditions) or []
            if not any(c.type == "Established" and c.status == "True" for c in conds):
                return False
        return True

    if not wait_until(established, timeout):
        raise RuntimeError(f"CRDs not established after {timeout}s: {names}")
    return names
