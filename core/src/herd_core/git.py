"""The git CLI: the one way Herd runs git, for the operator's sync (a repository cache with
credentials) and the devkit's local repositories, promotions and checkouts.

Never a prompt (a missing credential fails at once); `config` goes before the command as
`-c` pairs; a failure raises GitError with git's own words (the end of its stderr). A `watch`
is called every `WATCH_INTERVAL` s while git runs: whatever it raises stops git and all it
started (a transport, index-pack) at once and is raised (the operator's size cap).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

STDERR_TAIL = 500  # characters of git's stderr a GitError carries
WATCH_INTERVAL = 0.25  # seconds between two calls of a command's `watch`


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
    watch: Callable[[], None] | None = None,
) -> str:
    """`git <config> <args>` in `cwd`; its stdout, stripped."""
    return (
        output(*args, cwd=cwd, env=env, config=config, timeout=timeout, watch=watch)
        .decode()
        .strip()
    )


def output(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    config: Sequence[str] = (),
    timeout: float | None = None,
    watch: Callable[[], None] | None = None,
) -> bytes:
    """As `run`, but stdout as git wrote it (an archive, say)."""
    environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    if watch is not None:
        return _watched(["git", *config, *args], cwd, environ, timeout, watch, args[0])
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


def _watched(
    command: list[str],
    cwd: Path | None,
    env: Mapping[str, str],
    timeout: float | None,
    watch: Callable[[], None],
    name: str,
) -> bytes:
    # A session of its own, so that stopping it stops what git started too (a clone's
    # index-pack and transport go on writing after git itself is killed).
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = WATCH_INTERVAL
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.01))
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise GitError(f"git {name} timed out") from None
                watch()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        stderr = err.decode(errors="replace").strip()
        raise GitError(f"git {name} failed: {stderr[-STDERR_TAIL:]}", stderr)
    return out
