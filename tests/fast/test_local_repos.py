"""`herd app repo add URL PATH` (issue 34, "try your own repo locally"): the map `make up`
gives the local operators, and the operators' git layer fetching the production URL from the
local folder through it (real git, the operator's RepoCache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from herd_devkit.cli import repo as repo_cli
from herd_devkit.local import repos
from herd_devkit.local.gitrepo import Repo
from herd_operator.gitops.git import RepoCache

URL = "https://github.com/someone/app.git"


def flat(output: str) -> str:
    """The console's words on one line (rich wraps at the terminal's width)."""
    return " ".join(output.split())


def test_add_list_remove_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setattr(repo_cli, "_state", lambda: state)
    app = typer.Typer()
    app.add_typer(repo_cli.app, name="repo")
    runner = CliRunner()
    mine = Repo.create(tmp_path / "mine", {"app/cm.yaml": "x: 1\n"})

    result = runner.invoke(app, ["repo", "add", URL, str(mine.work)])
    assert result.exit_code == 0, result.output
    assert repos.load(state) == {URL: mine.work.resolve().as_uri()}
    assert repos.rewrites(state) == {mine.work.resolve().as_uri(): URL}
    assert URL in runner.invoke(app, ["repo", "list"]).output

    # An Application must name the URL it has in production, never a local one.
    refused = runner.invoke(app, ["repo", "add", mine.url, str(mine.work)])
    assert refused.exit_code == 1 and "file:// and local paths" in flat(refused.output)
    refused = runner.invoke(app, ["repo", "add", URL, str(tmp_path)])
    assert refused.exit_code == 1 and "is not a git repository" in flat(refused.output)

    assert runner.invoke(app, ["repo", "remove", URL]).exit_code == 0
    assert repos.load(state) == {}
    assert runner.invoke(app, ["repo", "remove", URL]).exit_code == 1


def test_the_operators_git_fetches_the_url_from_the_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    mine = Repo.create(tmp_path / "mine", {"README.md": "# mine\n"})
    sha = mine.commit("dev", "an app", {"app/cm.yaml": "apiVersion: v1\n"})
    # The bare origin, as a `git init --bare` a developer pushes to, and the work tree.
    repos.add(state, URL, mine.origin)
    cache = RepoCache(root=tmp_path / "cache", rewrites=repos.rewrites(state))
    assert cache.resolve(URL, "dev") == sha
    tree = cache.checkout(URL, sha, paths=("app",))
    assert (tree / "app" / "cm.yaml").read_text() == "apiVersion: v1\n"
