"""Real git repositories for tests and `make up`: a bare origin plus a working clone.

Everything goes through the git CLI (herd_core.git, as the operator's sync), as a user's
pushes and merges would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from herd_core.git import run

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Herd",
    "GIT_AUTHOR_EMAIL": "herd@herd-itt.com",
    "GIT_COMMITTER_NAME": "Herd",
    "GIT_COMMITTER_EMAIL": "herd@herd-itt.com",
}
_CONFIG = (
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "advice.detachedHead=false",
)


def git(*args: str, cwd: Path) -> str:
    """Git as a user runs it here: as Herd, unsigned, file:// repositories allowed."""
    return run(*args, cwd=cwd, env=_IDENTITY, config=_CONFIG)


@dataclass
class Repo:
    """A working clone whose every change is committed and pushed to `origin`."""

    origin: Path
    work: Path

    @classmethod
    def create(
        cls,
        root: Path,
        files: Mapping[str, str],
        branches: tuple[str, ...] = ("main", "dev"),
        message: str = "Initial commit",
    ) -> Repo:
        """A bare `origin.git` under root whose branches all start at one commit of `files`."""
        origin, work = root / "origin.git", root / "work"
        origin.mkdir(parents=True)
        git("init", "--bare", "--initial-branch", branches[0], str(origin), cwd=root)
        # As GitHub does: partial clones (the operator's mirrors fetch no file content until
        # a checkout needs it); without it, git clones a file:// repository whole.
        git("config", "uploadpack.allowFilter", "true", cwd=origin)
        git("clone", str(origin), str(work), cwd=root)
        repo = cls(origin=origin, work=work)
        repo._write(files)
        git("add", "--all", cwd=work)
        git("commit", "--allow-empty", "-m", message, cwd=work)
        git("push", "origin", f"HEAD:refs/heads/{branches[0]}", cwd=work)
        for branch in branches[1:]:
            git("push", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return repo

    @property
    def url(self) -> str:
        return self.origin.as_uri()

    def head(self, branch: str) -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.origin)

    def commit(
        self,
        branch: str,
        message: str,
        files: Mapping[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> str:
        """Write and delete files on `branch`, commit, push; returns the new commit."""
        self._checkout(branch)
        self._write(files or {})
        for path in remove:
            git("rm", "-r", "--quiet", path, cwd=self.work)
        git("add", "--all", cwd=self.work)
        git("commit", "-m", message, cwd=self.work)
        git("push", "origin", f"{branch}:{branch}", cwd=self.work)
        return self.head(branch)

    def merge(self, source: str = "dev", target: str = "main", message: str | None = None) -> str:
        """Merge `source` into `target` with a merge commit, as a pull request would."""
        self._checkout(target)
        git(
            "merge",
            "--no-ff",
            "-m",
            message or f"Merge {source} into {target}",
            f"origin/{source}",
            cwd=self.work,
        )
        git("push", "origin", f"{target}:{target}", cwd=self.work)
        return self.head(target)

    def _checkout(self, branch: str) -> None:
        git("fetch", "--quiet", "origin", cwd=self.work)
        git("checkout", "--quiet", "-B", branch, f"origin/{branch}", cwd=self.work)

    def _write(self, files: Mapping[str, str]) -> None:
        for rel, content in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
