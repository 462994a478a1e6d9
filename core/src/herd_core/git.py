"""The git CLI: the one way Herd runs git, for the operator's sync (a repository cache with
credentials) and the devkit's local repositories, promotions and checkouts.

Never a prompt (a missing credential fails at once); `config` goes before the command as
`-c` pairs; a failure raises GitError with git's own words (the end of its stderr).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

STDERR_TAIL = 500  # characters of git's stderr a GitError carries


class GitError(Exception):
    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def run(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    config: Sequence[str] = (),
    timeout: float | None = None,
) -> str:
    """`git <config> <args>` in `cwd`; its stdout, stripped."""
    return output(*args, cwd=cwd, env=env, config=config, timeout=timeout).decode().strip()


def output(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    config: Sequence[str] = (),
    timeout: float | None = None,
) -> bytes:
    """As `run`, but stdout as git wrote it (an archive, say)."""
    environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        result = subprocess.run(
            ["git", *config, *args],
            cwd=cwd,
            env=environ,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise GitError(f"git {args[0]} timed out") from err
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise GitError(f"git {args[0]} failed: {stderr[-STDERR_TAIL:]}", stderr)
    return result.stdout
