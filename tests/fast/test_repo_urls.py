"""Repository URLs as git reads them, never as strings: which Secret's credentials go to
which host (N4), and what a Project's sourceRepos globs admit (N5)."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from herd_core.constants import REPO_SECRET_LABEL, REPO_SECRET_TYPE
from herd_operator.gitops.engine import Application, ComparisonError, Engine
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.project import (
    InvalidProject,
    Project,
    credentials_match,
    normalize_repo_url,
)


@pytest.mark.parametrize(
    ("secret_url", "repo_url", "ok"),
    [
        # The host is evil.example: `github.com:x` is the userinfo (user github.com, password x).
        ("https://github.com", "https://github.com:x@evil.example/r.git", False),
        ("https://github.com", "https://github.com@evil.example/r.git", False),
        ("https://github.com/herd-itt", "https://github.com/herd-itt:x@evil.example/r.git", False),
        ("https://github.com", "https://github.com.evil.example/r.git", False),
        ("https://github.com", "https://github.com\\@evil.example/r.git", False),
        # Userinfo only with the same userinfo.
        ("https://github.com", "https://bot@github.com/herd-itt/r.git", False),
        ("https://bot@github.com", "https://bot@github.com/herd-itt/r.git", True),
        ("https://bot@github.com", "https://other@github.com/herd-itt/r.git", False),
        ("https://bot@github.com", "https://github.com/herd-itt/r.git", False),
        # Scheme and port; case and default port are not a difference.
        ("https://github.com", "http://github.com/herd-itt/r.git", False),
        ("https://github.com", "ssh://github.com/herd-itt/r.git", False),
        ("https://github.com", "https://github.com:8443/herd-itt/r.git", False),
        ("https://github.com:443", "https://github.com/herd-itt/r.git", True),
        ("HTTPS://GitHub.com/herd-itt", "https://github.com/herd-itt/r.git", True),
        # Path prefix in whole segments; no dot segments to climb out of it.
        ("https://github.com", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt/", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt/herd.git", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt", "https://github.com/herd-itt-evil/x.git", False),
        ("https://github.com/herd-itt", "https://github.com/herd-itt/../evil/x.git", False),
        ("https://github.com/herd-itt", "https://github.com/herd-itt/%2e%2e/evil/x.git", False),
        ("https://github.com/herd-itt", "https://evil.example/herd-itt/x.git", False),
        # A query or fragment: only the same URL.
        ("https://github.com/herd-itt", "https://github.com/herd-itt/x.git?a=b", False),
        # scp-like SSH: user and host as for URLs.
        ("git@github.com:", "git@github.com:herd-itt/herd.git", True),
        ("git@github.com", "git@github.com:herd-itt/herd.git", True),
        ("git@github.com:herd-itt", "git@github.com:herd-itt/herd.git", True),
        ("git@github.com:herd-itt", "git@github.com:herd-itt-evil/x.git", False),
        ("git@github.com:", "git@evil.example:herd-itt/herd.git", False),
        ("git@github.com:", "evil@github.com:herd-itt/herd.git", False),
        ("https://github.com/herd-itt", "git@github.com:herd-itt/herd.git", False),
        # Local mode's repositories.
        ("file:///tmp/r/origin.git", "file:///tmp/r/origin.git", True),
        ("file:///tmp/r/origin.git", "file:///tmp/r/origin.git-evil", False),
        (None, "https://github.com/herd-itt/herd.git", False),
        ("", "https://github.com/herd-itt/herd.git", False),
    ],
)
def test_credentials_go_only_to_the_scheme_user_host_and_port_of_their_secret(
    secret_url: str | None, repo_url: str, ok: bool
) -> None:
    assert credentials_match(secret_url, repo_url) is ok


TEAM_A = Project("team-a", {"sourceRepos": ["https://git.example.test/team-a/*"]})


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.test/team-a/app.git",
        "HTTPS://Git.Example.Test/team-a/app.git",
        "https://git.example.test:443/team-a/app.git",
        "https://git.example.test/team-a/%61pp.git",
    ],
)
def test_source_repos_admit_a_url_in_any_spelling_of_a_permitted_one(url: str) -> None:
    TEAM_A.check_source(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://git.example.test/team-a/../attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/./../attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/%2e%2e/attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/%2E%2E/attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/.%2e/attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/%252e%252e/attacker/evil.git", "dot segment"),
        ("https://git.example.test/team-a/..%2fattacker/evil.git", "escaped slash"),
        ("https://git.example.test/team-a/x/..", "dot segment"),
        ("https://git.example.test/team-a/..\\attacker/evil.git", "backslash"),
        ("https://git.example.test/team-a/x\n/../../attacker/evil.git", "control character"),
        ("git@git.example.test:team-a/../attacker/evil.git", "dot segment"),
    ],
)
def test_source_repos_refuse_dot_segments_and_backslashes(url: str, message: str) -> None:
    with pytest.raises(InvalidProject, match=message):
        TEAM_A.check_source(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.test/team-b/app.git",
        "https://git.example.test/team-a",
        "https://evil.example/git.example.test/team-a/app.git",
        "https://git.example.test:8443/team-a/app.git",
    ],
)
def test_source_repos_refuse_what_no_glob_admits(url: str) -> None:
    with pytest.raises(InvalidProject, match="not permitted in project team-a"):
        TEAM_A.check_source(url)


def test_the_normal_form() -> None:
    assert (
        normalize_repo_url("HTTPS://Bot@GitHub.com:443/herd-itt/%68erd%2Dx.git/")
        == "https://Bot@github.com/herd-itt/herd-x.git"
    )
    assert normalize_repo_url("ssh://git@[::1]:2222/x.git") == "ssh://git@[::1]:2222/x.git"
    assert normalize_repo_url("git@GitHub.com:herd-itt/x.git") == "git@github.com:herd-itt/x.git"
    assert normalize_repo_url("file:///tmp/r/origin.git") == "file:///tmp/r/origin.git"
    assert normalize_repo_url("https://h/a%20b%3f.git") == "https://h/a%20b%3F.git"


def test_the_engine_refuses_a_secret_for_another_host(tmp_path: Path) -> None:
    """Through the engine's own lookup: a labelled Secret for https://github.com, named by an
    Application whose URL's host is evil.example."""

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    secret = SimpleNamespace(
        metadata=SimpleNamespace(labels={REPO_SECRET_LABEL: REPO_SECRET_TYPE}),
        data={"username": b64("bot"), "password": b64("token"), "url": b64("https://github.com")},
    )

    class Core:
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            assert (name, namespace) == ("creds", "apps")
            return secret

    engine = Engine(client.ApiClient(), RepoCache(root=tmp_path), Path("helm"))
    engine.core = Core()  # type: ignore[assignment]

    def app(url: str) -> Application:
        source = {"repoURL": url, "credentials": {"secretName": "creds"}}
        return Application(name="a", namespace="apps", spec={"source": source}, inventory=[])

    evil = "https://github.com:x@evil.example/r.git"
    with pytest.raises(ComparisonError, match=f"is for https://github.com, not for {evil}"):
        engine._credentials(app(evil))
    creds = engine._credentials(app("https://github.com/herd-itt/herd.git"))
    assert creds is not None and creds.password == "token"
