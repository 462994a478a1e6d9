"""Programs run under their own chart's ServiceAccount, locally as on EKS.

A kubeconfig for a ServiceAccount holds a TokenRequest token (what the kubelet projects into
a pod), so the API server's RBAC judges every call of the operator, the API and the worker
exactly as it would in the cluster. The admin kubeconfig is for people (kubectl), never for a
program.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from herd_devkit.local.process import wait_until

# Local processes outlive a pod's hourly token rotation; a week covers a `make up` session.
TOKEN_SECONDS = 7 * 24 * 3600


def service_account_kubeconfig(
    api: ApiClient,
    admin_kubeconfig: Path,
    namespace: str,
    name: str,
    dest: Path,
    seconds: int = TOKEN_SECONDS,
) -> Path:
    """Write `dest`: the cluster of `admin_kubeconfig`, authenticated as namespace/name."""
    core = client.CoreV1Api(api)
    if not wait_until(lambda: _exists(core, namespace, name), 120, interval=0.5):
        raise RuntimeError(f"ServiceAccount {namespace}/{name} did not appear")
    status = core.create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        ),
    ).status
    if status is None:
        raise RuntimeError(f"no token for ServiceAccount {namespace}/{name}")
    token = status.token
    config = yaml.safe_load(admin_kubeconfig.read_text())
    user = f"system:serviceaccount:{namespace}:{name}"
    config["users"] = [{"name": user, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = user
        context["context"]["namespace"] = namespace
    write_private(dest, yaml.safe_dump(config, sort_keys=False))
    return dest


def write_private(path: Path, text: str) -> None:
    """Write a credentials file only its owner may read (0600, in a 0700 folder), also when it
    existed before with wider permissions."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_service_account(name, namespace)
    except client.exceptions.ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def merged_kubeconfig(kubeconfigs: list[Path], current: str, dest: Path) -> Path:
    """One kubeconfig with every cluster's context (as kind adds its own); `current` first."""
    merged: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": current,
    }
    for path in kubeconfigs:
        one = yaml.safe_load(path.read_text())
        for key in ("clusters", "users", "contexts"):
            merged[key] += one[key]
    write_private(dest, yaml.safe_dump(merged, sort_keys=False))
    return dest
