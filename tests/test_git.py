"""The git fixtures make real repositories: branches diverge and merge as on a real remote."""

from __future__ import annotations

from pathlib import Path

from herd_operator.local.gitrepo import Repo, git


def test_dev_and_main_start_together(repo: Repo) -> None:
    assert repo.head("dev") == repo.head("main")
    assert git("rev-parse", "--is-bare-repository", cwd=repo.origin) == "true"


def test_commit_to_dev_then_merge_to_main(repo: Repo, tmp_path: Path) -> None:
    dev = repo.commit("dev", "bump tag", {"apps/api/values.yaml": "tag: v2\n"})
    assert repo.head("dev") == dev != repo.head("main")

    # A separate clone (as the operator makes) sees dev's change and not main's.
    clone = tmp_path / "clone"
    git("clone", "--quiet", "--branch", "main", repo.url, str(clone), cwd=tmp_path)
    assert not (clone / "apps/api/values.yaml").exists()

    merged = repo.merge("dev", "main")
    git("pull", "--quiet", cwd=clone)
    assert (clone / "apps/api/values.yaml").read_text() == "tag: v2\n"
    assert git("rev-parse", "HEAD", cwd=clone) == merged
    parents = git("rev-list", "--parents", "-n", "1", merged, cwd=clone).split()
    assert dev in parents[1:]


def test_remove_file(repo: Repo) -> None:
    repo.commit("dev", "add", {"a.yaml": "x: 1\n"})
    sha = repo.commit("dev", "remove", remove=("a.yaml",))
    files = git("ls-tree", "-r", "--name-only", sha, cwd=repo.origin).split()
    assert "a.yaml" not in files
