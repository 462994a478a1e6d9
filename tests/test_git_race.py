"""The operator's repository cache under a cold start, with real git and real local bare
repositories: hundreds of Applications of one repository the cache has never cloned reconcile
at the same moment (issue 33: some stuck at `destination path '<key>.tmp' already exists` or
`Directory not empty: '<key>.tmp' -> '<key>'`)."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from herd_devkit.local.gitrepo import Repo, git
from herd_operator.gitops import git as cache_module
from herd_operator.gitops.git import GitError, RepoCache


def count_git(
    monkeypatch: pytest.MonkeyPatch, before: Callable[..., None] | None = None
) -> Counter[str]:
    """Counts the cache's git commands by name (clone, fetch, ...), in every RepoCache;
    `before(cache, *args)` runs ahead of each."""
    calls: Counter[str] = Counter()
    guard = threading.Lock()
    real: Callable[..., str] = RepoCache._git

    def counted(self: RepoCache, *args: str, **kwargs: Any) -> str:
        with guard:
            calls[args[0]] += 1
        if before is not None:
            before(self, *args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RepoCache, "_git", counted)
    return calls


def gate_first(monkeypatch: pytest.MonkeyPatch, command: str, callers: int) -> Callable[..., None]:
    """A `before` for count_git: the first `command` (clone, fetch) runs once all `callers`
    have asked (taken their ticket; that command's own makes one more). Those who asked
    before it began share it, the rest share the next: two at most, however the threads are
    scheduled. The timeout only bounds the wait of a cache that shares nothing (the test
    then fails on its count)."""
    asked = threading.Condition()
    tickets = 0
    gated = threading.Event()
    real_ticket: Callable[[], int] = cache_module._ticket

    def ticket() -> int:
        nonlocal tickets
        with asked:
            tickets += 1
            asked.notify_all()
        return real_ticket()

    def gate(_: RepoCache, *args: str) -> None:
        if args[0] == command and not gated.is_set():
            gated.set()
            with asked:
                asked.wait_for(lambda: tickets >= callers + 1, timeout=10)

    monkeypatch.setattr(cache_module, "_ticket", ticket)
    return gate


def test_200_reconciles_at_once_clone_a_new_repository_once(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit("dev", "apps", {"apps/a.yaml": "a: 1\n"})
    calls = count_git(monkeypatch, before=gate_first(monkeypatch, "clone", 200))
    root = tmp_path / "cache"
    # A cache each, as the operator's engine() made several when its first handlers raced;
    # one cache per root or many, each (url, credentials) is cloned once at a time.
    barrier = threading.Barrier(200)

    def reconcile(_: int) -> tuple[str, Path]:
        cache = RepoCache(root=root)
        barrier.wait()
        resolved = cache.resolve(repo.url, "dev")
        return resolved, cache.checkout(repo.url, resolved)

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(reconcile, range(200)))
    assert {r for r, _ in results} == {sha}
    assert {t for _, t in results} == {results[0][1]}
    assert (results[0][1] / "apps/a.yaml").read_text() == "a: 1\n"
    assert calls["clone"] == 1
    # The callers that asked before the clone began share it, and those who asked later
    # share the fetch after it (199 fetches, one after the other, when each did its own).
    assert calls["fetch"] <= 1
    assert sorted(p.name for p in (root / "repos").iterdir() if ".tmp" in p.name) == []


def test_concurrent_fetches_of_a_mirror_are_one_fetch(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RepoCache(root=tmp_path / "cache")
    cache.fetch(repo.url)
    waiters = 20
    calls = count_git(monkeypatch, before=gate_first(monkeypatch, "fetch", waiters))
    sha = repo.commit("dev", "new", {"a.yaml": "a: 1\n"})
    with ThreadPoolExecutor(max_workers=waiters) as pool:
        shas = list(pool.map(lambda _: cache.resolve(repo.url, "dev"), range(waiters)))
    assert shas == [sha] * waiters
    assert 1 <= calls["fetch"] <= 2  # one fetch per caller before: 20

    # A caller that asks after the last fetch began gets a fetch of its own: a push is seen.
    calls.clear()
    pushed = repo.commit("dev", "newer", {"a.yaml": "a: 2\n"})
    assert cache.resolve(repo.url, "dev") == pushed
    assert calls["fetch"] == 1


def test_apps_woken_by_a_push_share_the_first_fetch_begun_after_it(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push's apps, reconciled one after another (a few wake threads), each with the
    push's moment (git.fresh_since): one fetch, not one each; and never a fetch from before
    the push."""
    cache = RepoCache(root=tmp_path / "cache")
    cache.fetch(repo.url)
    calls = count_git(monkeypatch)
    pushed = repo.commit("dev", "push", {"a.yaml": "a: 1\n"})
    moment = cache_module.ticket()  # the webhook's answer takes it

    def woken() -> str:
        token = cache_module.fresh_since.set(moment)
        try:
            return cache.resolve(repo.url, "dev")
        finally:
            cache_module.fresh_since.reset(token)

    assert [woken() for _ in range(50)] == [pushed] * 50
    assert calls["fetch"] == 1
    # Unset (a poll, a watch event), each reconcile fetches anew.
    calls.clear()
    assert [cache.resolve(repo.url, "dev") for _ in range(3)] == [pushed] * 3
    assert calls["fetch"] == 3
    # A push after the last fetch began is not served by it.
    newer = repo.commit("dev", "newer", {"a.yaml": "a: 2\n"})
    moment = cache_module.ticket()
    calls.clear()
    assert woken() == newer
    assert calls["fetch"] == 1


def test_a_failed_fetch_is_shared_by_those_who_waited_for_it(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = repo.url
    repo.origin.rename(repo.origin.with_name("gone.git"))  # never cloned, and now unreachable
    calls = count_git(monkeypatch, before=gate_first(monkeypatch, "clone", 20))

    def fetch(_: int) -> str:
        with pytest.raises(GitError) as err:
            RepoCache(root=tmp_path / "cache").fetch(url)
        return str(err.value)

    with ThreadPoolExecutor(max_workers=20) as pool:
        errors = list(pool.map(fetch, range(20)))
    assert all("git clone failed" in e for e in errors)
    # Twenty callers, not twenty clones (each would wait for its timeout on a dead host).
    assert calls["clone"] <= 2


def test_leftovers_of_a_crashed_clone_are_cleaned(repo: Repo, tmp_path: Path) -> None:
    cache = RepoCache(root=tmp_path / "cache")
    mirror = cache.mirror(repo.url)
    mirror.parent.mkdir(parents=True)
    for name in (f"{mirror.name}.tmp", f"{mirror.name}.tmp-k1lled"):  # old name, new name
        (mirror.parent / name).mkdir()
        (mirror.parent / name / "HEAD").write_text("half a clone")
    assert cache.resolve(repo.url, "main") == repo.head("main")
    assert sorted(p.name for p in mirror.parent.iterdir()) == [mirror.name, f"{mirror.name}.lock"]


def test_a_mirror_made_meanwhile_by_another_process_is_used(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RepoCache(root=tmp_path / "cache")
    mirror = cache.mirror(repo.url)

    def other_process_first(_: RepoCache, *args: str) -> None:
        if args[0] == "clone":  # one without our lock (an older operator) wins the race
            git("clone", "--bare", "--quiet", repo.url, str(mirror), cwd=tmp_path)

    count_git(monkeypatch, before=other_process_first)
    assert cache.resolve(repo.url, "dev") == repo.head("dev")
    assert [p.name for p in mirror.parent.iterdir() if ".tmp" in p.name] == []


def test_a_clone_waits_for_another_process_holding_the_mirror(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process on the same root (the CLI, a second operator) is mid-clone: its
    `.tmp` is no leftover, and its mirror is not cloned twice."""
    cache = RepoCache(root=tmp_path / "cache")
    mirror = cache.mirror(repo.url)
    mirror.parent.mkdir(parents=True)
    theirs = mirror.parent / f"{mirror.name}.tmp-theirs"
    lock = str(mirror.parent / f"{mirror.name}.lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({lock!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        git("clone", "--bare", "--quiet", repo.url, str(theirs), cwd=tmp_path)
        blocked = threading.Event()
        real_flock = fcntl.flock

        def flock(fd: int, op: int) -> None:
            try:
                real_flock(fd, op)
            except BlockingIOError:
                blocked.set()
                raise

        monkeypatch.setattr(fcntl, "flock", flock)
        calls = count_git(monkeypatch)
        result: list[str | BaseException] = []

        def resolve() -> None:
            try:
                result.append(cache.resolve(repo.url, "dev"))
            except BaseException as err:  # reported below
                result.append(err)

        thread = threading.Thread(target=resolve)
        thread.start()
        assert blocked.wait(timeout=30), "the clone did not wait for the other process's lock"
        assert (theirs / "HEAD").exists()  # not taken for a leftover
        theirs.rename(mirror)  # the other process is done
    finally:
        holder.communicate("")  # it exits, and its lock goes with it
    thread.join(timeout=120)
    assert result == [repo.head("dev")]
    assert calls["clone"] == 0 and calls["fetch"] == 1
