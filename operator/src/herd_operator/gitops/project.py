"""Project: what the Applications that name it may do (a subset of Argo CD's AppProject).

A Project is cluster-scoped and written by cluster admins; an Application only names one.
Everything here is pure: the engine reads the Project and calls these checks before anything
is fetched (source), rendered (destination, ServiceAccount) or applied (each object's kind and
namespace). The API server's RBAC of the destination ServiceAccount, which every request of
the sync impersonates, is the second fence; these checks give the clear message first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herd_operator.gitops.plan import Key, NotAllowed


class InvalidProject(Exception):
    """The Application may not use this Project (or its source or destination)."""


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _group_kind(key: Key, entries: list[Mapping[str, Any]]) -> bool:
    return any(
        _glob(key.group, str(e.get("group") or "")) and _glob(key.kind, str(e.get("kind") or ""))
        for e in entries
    )


@dataclass(frozen=True)
class Project:
    name: str
    spec: Mapping[str, Any]

    @property
    def source_repos(self) -> list[str]:
        return [str(r) for r in self.spec.get("sourceRepos") or []]

    @property
    def destinations(self) -> list[str]:
        return [str(d.get("namespace") or "") for d in self.spec.get("destinations") or []]

    def check_source(self, url: str) -> None:
        if not any(_glob(url, p) for p in self.source_repos):
            raise InvalidProject(f"repository {url} is not permitted in project {self.name}")

    def check_destination(self, namespace: str) -> None:
        if not any(_glob(namespace, p) for p in self.destinations):
            raise InvalidProject(
                f"destination namespace {namespace} is not permitted in project {self.name}"
            )

    def service_account(self, destination: str) -> tuple[str, str]:
        """(namespace, name) of the ServiceAccount a sync to `destination` impersonates:
        the first entry whose namespace glob matches (Argo's destinationServiceAccounts)."""
        for entry in self.spec.get("destinationServiceAccounts") or []:
            if _glob(destination, str(entry.get("namespace") or "")):
                account = str(entry.get("defaultServiceAccount") or "")
                namespace, _, name = account.rpartition(":")
                if account and name:
                    return (namespace or destination, name)
        raise InvalidProject(
            f"project {self.name} has no destinationServiceAccounts entry for namespace "
            f"{destination}"
        )

    def check_object(self, key: Key, namespaced: bool) -> None:
        """An object the Application renders: namespaced ones in a permitted namespace and
        not blacklisted; cluster-scoped ones only when whitelisted."""
        if namespaced:
            if not any(_glob(key.namespace, p) for p in self.destinations):
                raise NotAllowed(
                    f"{key}: namespace {key.namespace} is not a destination of project {self.name}"
                )
            if _group_kind(key, list(self.spec.get("namespaceResourceBlacklist") or [])):
                raise NotAllowed(
                    f"{key}: {key.group or 'core'}/{key.kind} is blacklisted in project {self.name}"
                )
            return
        if not _group_kind(key, list(self.spec.get("clusterResourceWhitelist") or [])):
            raise NotAllowed(
                f"{key}: cluster-scoped {key.group or 'core'}/{key.kind} is not in the "
                f"clusterResourceWhitelist of project {self.name}"
            )


def impersonated_user(account: tuple[str, str]) -> str:
    return f"system:serviceaccount:{account[0]}:{account[1]}"


def check_repo_url(url: str, local_sources: bool) -> None:
    """Only remote, authenticated transports unless the operator runs in local mode: file://
    and local paths would read the operator's own disk (another Application's mirror, its
    kubeconfig), http:// is readable and forgeable on the way."""
    remote = url.startswith(("https://", "ssh://")) or (
        url.startswith("git@") and ":" in url.split("/", 1)[0]
    )
    if remote:
        return
    if url.startswith("-"):
        raise InvalidProject(f"repository URL {url!r} is not a URL")
    if not local_sources:
        raise InvalidProject(
            f"repository URL {url} is refused: only https://, ssh:// and git@ URLs "
            "(file://, local paths and http:// only when the operator runs in local mode)"
        )


def credentials_match(secret_url: str | None, repo_url: str) -> bool:
    """Argo's repo-creds rule: the Secret's `url` is a prefix of the repository URL, cut at a
    path boundary (https://github.com/org does not match https://github.com/org-evil/x)."""
    if not secret_url:
        return False
    if repo_url == secret_url:
        return True
    if not repo_url.startswith(secret_url):
        return False
    return secret_url.endswith(("/", ":")) or repo_url[len(secret_url)] in "/:"
