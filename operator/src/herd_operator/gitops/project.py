"""Project: what the Applications that name it may do (a subset of Argo CD's AppProject).

A Project is cluster-scoped and written by cluster admins; an Application only names one,
from a namespace the Project lists (sourceNamespaces) or the operator's own.
Everything here is pure: the engine reads the Project and calls these checks before anything
is fetched (source), rendered (destination, ServiceAccount) or applied (each object's kind and
namespace). The API server's RBAC of the destination ServiceAccount, which every request of
the sync impersonates, is the second fence; these checks give the clear message first.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from herd_operator.gitops.plan import Key, NotAllowed


class InvalidProject(Exception):
    """The Application may not use this Project (or its source or destination)."""


_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>.*)$")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_REFUSED = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters, backslashes


@dataclass(frozen=True)
class RepoURL:
    """A repository URL as git reads it, in a normal form: scheme and host in lower case, no
    default port, percent-escapes of unreserved characters decoded, no trailing slash.

    `parse` refuses what would make a string test (a glob, a prefix) say something other
    than where git goes: dot segments (`..`, `.`, also percent-encoded), backslashes, control
    characters and escaped slashes. `https://host/team-a/../attacker/evil.git` matches the
    glob `https://host/team-a/*` and fetches attacker/evil."""

    scheme: str  # "scp" for git@host:path, "" for a local path
    userinfo: str | None
    host: str
    port: int | None  # None: the scheme's default
    segments: tuple[str, ...]  # "" first for an absolute path
    rest: str = ""  # ?query#fragment

    @classmethod
    def parse(cls, url: str) -> RepoURL:
        if _REFUSED.search(url):
            raise InvalidProject(
                f"repository URL {url!r} is refused: it has a backslash or a control character"
            )
        scp = None if "://" in url else _SCP.match(url)
        if "://" in url:
            split = urlsplit(url)
            netloc = split.netloc
            userinfo = netloc.rpartition("@")[0] if "@" in netloc else None
            try:
                port = split.port
            except ValueError as err:
                raise InvalidProject(f"repository URL {url!r} has an invalid port") from err
            scheme = split.scheme.lower()
            if port == _DEFAULT_PORTS.get(scheme):
                port = None
            rest = (f"?{split.query}" if split.query else "") + (
                f"#{split.fragment}" if split.fragment else ""
            )
            parsed = cls(scheme, userinfo, split.hostname or "", port, (), rest)
            path = split.path
        elif scp:
            parsed = cls("scp", scp["user"], scp["host"].lower(), None, ())
            path = scp["path"]
        else:
            parsed = cls("", None, "", None, ())
            path = url
        segments = path.split("/")
        while segments and not segments[-1]:
            segments.pop()
        for segment in segments:
            decoded = segment
            for _ in range(3):  # %252e%252e is %2e%2e once decoded, `..` twice
                decoded = unquote(decoded)
            if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
                raise InvalidProject(
                    f"repository URL {url!r} is refused: its path has a dot segment "
                    "('.' or '..', also percent-encoded) or an escaped slash"
                )
        return cls(
            parsed.scheme,
            parsed.userinfo,
            parsed.host,
            parsed.port,
            tuple(_ESCAPE.sub(_unescape_unreserved, s) for s in segments),
            parsed.rest,
        )

    @property
    def origin(self) -> tuple[str, str | None, str, int | None]:
        """Where git connects, and as whom."""
        return (self.scheme, self.userinfo, self.host, self.port)

    def __str__(self) -> str:
        path = "/".join(self.segments)
        if self.scheme == "":
            return path
        user = f"{self.userinfo}@" if self.userinfo is not None else ""
        if self.scheme == "scp":
            return f"{user}{self.host}:{path}{self.rest}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{user}{host}{port}{path}{self.rest}"


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match[1], 16))
    return char if char in _UNRESERVED else f"%{match[1].upper()}"


def normalize_repo_url(url: str) -> str:
    """`url` in RepoURL's normal form (InvalidProject for what RepoURL refuses)."""
    return str(RepoURL.parse(url))


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
    def source_namespaces(self) -> list[str]:
        return [str(n) for n in self.spec.get("sourceNamespaces") or []]

    @property
    def destinations(self) -> list[str]:
        return [str(d.get("namespace") or "") for d in self.spec.get("destinations") or []]

    def check_application_namespace(self, namespace: str, control: str | None) -> None:
        """Argo's sourceNamespaces: whoever may write an Application in some namespace may
        name this Project only if the Project lists that namespace. The control-plane
        namespace (the operator's own, where the platform's Applications live) always may:
        Projects are cluster-scoped, so that is the one namespace every Project trusts."""
        if namespace == control:
            return
        if not any(_glob(namespace, p) for p in self.source_namespaces):
            raise InvalidProject(
                f"project {self.name} does not permit Applications in namespace {namespace} "
                "(not in its sourceNamespaces)"
            )

    def check_source(self, url: str) -> None:
        # Matched as written and in normal form (`HTTPS://GitHub.com/x` is github.com/x); the
        # normal form refuses dot segments, which a glob's `*` would cross.
        normal = normalize_repo_url(url)
        if not any(_glob(normal, p) or _glob(url, p) for p in self.source_repos):
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
    """Argo's repo-creds rule, on parsed URLs, never on strings: the same scheme, user
    (userinfo), host and port, and the Secret's path a prefix of the repository's in whole
    segments (https://github.com/org does not match https://github.com/org-evil/x, nor
    https://github.com matches https://github.com:x@evil.example/r.git, whose host is
    evil.example). A query or fragment matches only the same one."""
    if not secret_url:
        return False
    if "://" not in secret_url and "@" in secret_url and not re.search("[:/]", secret_url):
        secret_url += ":"  # git@github.com: the whole host, as `git@github.com:`
    try:
        secret, repo = RepoURL.parse(secret_url), RepoURL.parse(repo_url)
    except InvalidProject:
        return False
    if secret.rest or repo.rest:
        return secret == repo
    return secret.origin == repo.origin and repo.segments[: len(secret.segments)] == secret.segments
