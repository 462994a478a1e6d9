"""Local GitOps plumbing shared by `make up` and the tests: an origin repository seeded from
the working tree, and a cluster bootstrapped to follow it (CRDs + its root Application)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core import git
from herd_devkit.local import crds, identity
from herd_devkit.local.gitrepo import Repo
from herd_devkit.stack import helm_install
from herd_operator.gitops.kubeapply import Applier

# What the clusters read from git.
GITOPS_FOLDERS = ("apps", "charts", "clusters")
# The URL clusters/*/ name; locally git rewrites it to the seeded origin (insteadOf).
UPSTREAM_URL = "https://github.com/herd-itt/herd.git"


def tracked_files(repo_root: Path, folders: tuple[str, ...] = GITOPS_FOLDERS) -> dict[str, str]:
    """Files git knows (tracked, or new and not ignored) under `folders`, with contents. A
    symlinked folder (charts/<chart>/charts/herd-lib) is copied file by file: it renders the
    same, and a Repo is written from files only."""
    out = git.run(
        "ls-files", "--cached", "--others", "--exclude-standard", "--", *folders, cwd=repo_root
    ).split()
    files: dict[str, str] = {}
    for rel in out:
        path = repo_root / rel
        if path.is_symlink() and path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file():
                    files[str(Path(rel) / sub.relative_to(path))] = sub.read_text()
        elif path.is_file():
            files[rel] = path.read_text()
    return files


def seed_origin(repo_root: Path, dest: Path) -> Repo:
    """A bare `origin` with `main` and `dev` holding this working tree's GitOps folders."""
    return Repo.create(dest, tracked_files(repo_root), message="Seed from the working tree")


def url_rewrites(origin: Repo) -> dict[str, str]:
    return {origin.url: UPSTREAM_URL}


# The operator's Helm release and namespace (its ServiceAccount is named after the release).
OPERATOR_RELEASE, OPERATOR_NAMESPACE = "herd-operator", "herd-system"


def install_operator_chart(
    kubeconfig: Path, repo_root: Path, env: str, set_values: list[str] | None = None
) -> None:
    """`helm upgrade --install` the operator chart with ENV's values: its ServiceAccount and
    RBAC are the operator's identity from then on (the herd-operator Application adopts it)."""
    helm_install(
        kubeconfig,
        repo_root,
        OPERATOR_RELEASE,
        "charts/herd-operator",
        OPERATOR_NAMESPACE,
        ["apps/herd-operator/values.yaml", f"clusters/{env}/values/herd-operator.yaml"],
        dict(v.split("=", 1) for v in set_values or []),
    )


def operator_installed(api: ApiClient) -> bool:
    """Whether the operator's identity (its chart's ServiceAccount) is in the cluster already.
    Then git owns the chart (the herd-operator Application adopted it): installing it again
    would fight the sync's field manager (helm's apply conflicts on fields the sync set), so a
    second `make up` after an operator died only starts the operator again."""
    try:
        client.CoreV1Api(api).read_namespaced_service_account(OPERATOR_RELEASE, OPERATOR_NAMESPACE)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def operator_kubeconfig(api: ApiClient, admin_kubeconfig: Path, dest: Path) -> Path:
    """A kubeconfig at `dest` for the operator chart's ServiceAccount (a TokenRequest token):
    the identity the operator runs under, as on EKS."""
    return identity.service_account_kubeconfig(
        api, admin_kubeconfig, OPERATOR_NAMESPACE, OPERATOR_RELEASE, dest
    )


def ensure_namespace(api: ApiClient, name: str) -> None:
    """Namespace `name`, made unless it is there."""
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as err:
        if err.status != 409:
            raise


# The platform Project and the ServiceAccount its Applications act as: applied before the
# root Application (which names the Project), then kept by the `platform` Application.
PLATFORM_PROJECT = Path("apps") / "platform" / "project.yaml"


def bootstrap_cluster(api: ApiClient, repo_root: Path, env: str) -> dict[str, object]:
    """Install the CRDs, the platform Project and the environment's root Application; git
    does the rest."""
    crds.install(api, repo_root / "charts" / "herd-operator" / "crds")
    root = yaml.safe_load((repo_root / "clusters" / env / "root.yaml").read_text())
    applier = Applier(api, field_manager="herd-bootstrap")
    namespace = root["metadata"]["namespace"]
    applier.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for obj in yaml.safe_load_all((repo_root / PLATFORM_PROJECT).read_text()):
        if obj:
            applier.apply(obj)
    return applier.apply(root)
