"""Your own repositories under `make up`: an Application keeps the URL it has in production
(https://github.com/you/app.git) while the local operators fetch it from a folder on this
machine, through git's insteadOf (HERD_GIT_URL_REWRITES, as `make up` already points
clusters/' GitHub URL at its seeded origin). The map is kept in <state>/repos.json and
passed to the operators by `make up`, which restarts them when it changed. Applications never
name file:// themselves: the operators in EKS refuse local sources (HERD_LOCAL_SOURCES off),
and the same Application must run there."""

from __future__ import annotations

import json
from pathlib import Path

from herd_core import git
from herd_core.git import GitError

FILE = "repos.json"
REMOTE_PREFIXES = ("https://", "http://", "ssh://", "git@")


class RepoError(ValueError):
    pass


def load(state: Path) -> dict[str, str]:
    """{URL the Applications name: file:// URL of the local repository}."""
    path = state / FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save(state: Path, repos: dict[str, str]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / f".{FILE}.tmp"
    tmp.write_text(json.dumps(repos, indent=2, sort_keys=True) + "\n")
    tmp.replace(state / FILE)


def add(state: Path, url: str, folder: Path) -> str:
    """Fetch `url` from `folder` (a git repository: a work tree or a bare one); returns the
    folder's file:// URL."""
    if not url.startswith(REMOTE_PREFIXES):
        raise RepoError(
            f"{url}: name the repository as the Applications do in production (https://, "
            "ssh:// or git@); file:// and local paths are for `make up` only"
        )
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise RepoError(f"{folder} is not a folder")
    try:
        git.run("rev-parse", "--git-dir", cwd=folder)
    except GitError as err:
        raise RepoError(f"{folder} is not a git repository") from err
    repos = load(state)
    repos[url] = folder.as_uri()
    _save(state, repos)
    return repos[url]


def remove(state: Path, url: str) -> bool:
    repos = load(state)
    if repos.pop(url, None) is None:
        return False
    _save(state, repos)
    return True


def rewrites(state: Path) -> dict[str, str]:
    """git insteadOf pairs ({new URL: URL in the Application}), as HERD_GIT_URL_REWRITES."""
    return {local: url for url, local in load(state).items()}
