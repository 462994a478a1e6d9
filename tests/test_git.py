"""The git fixtures make real repositories: branches diverge and merge as on a real remote.
And the operator's repository cache, against them: concurrency, credentials, symlinks."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from herd_devkit.local.gitrepo import Repo, git
from herd_operator.gitops import git as gitcache
from herd_operator.gitops.git import (
    SHARE_WHOLE_AFTER,
    Credentials,
    GitError,
    RepoCache,
    TooLarge,
    disk_bytes,
    ssh_command,
)
from herd_operator.gitops.render import Source


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


# -- the operator's repository cache (real git) -------------------------------------------
def test_concurrent_checkouts_of_one_repository(repo: Repo, tmp_path: Path) -> None:
    shas = [repo.commit("dev", str(i), {"f.txt": str(i)}) for i in range(6)]
    cache = RepoCache(root=tmp_path / "cache")
    cache.fetch(repo.url)
    # Before each checkout had its own index, most failed with `index.lock exists`.
    with ThreadPoolExecutor(max_workers=12) as pool:
        trees = list(pool.map(lambda i: (i, cache.checkout(repo.url, shas[i % 6])), range(48)))
    for i, tree in trees:
        assert (tree / "f.txt").read_text() == str(i % 6)


def test_mirrors_are_keyed_by_url_and_credentials(repo: Repo, tmp_path: Path) -> None:
    cache = RepoCache(root=tmp_path / "cache")
    alice = Credentials("alice", "secret-a", url=repo.url)
    bob = Credentials("bob", "secret-b", url=repo.url)
    mirrors = {cache.mirror(repo.url), cache.mirror(repo.url, alice), cache.mirror(repo.url, bob)}
    assert len(mirrors) == 3
    # The key says nothing about the secret.
    assert all("secret" not in str(m) for m in mirrors)
    sha = cache.resolve(repo.url, "dev", alice)
    assert cache.resolve(repo.url, "dev") == sha
    assert cache.checkout(repo.url, sha, alice) != cache.checkout(repo.url, sha)


def test_a_symlink_out_of_the_tree_refuses_the_checkout(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("admin token")
    (repo.work / "inside").symlink_to("README.md")
    (repo.work / "sub").mkdir()
    (repo.work / "sub" / "up").symlink_to("../../secret")
    sha = repo.commit("dev", "links", {"sub/x.yaml": "{}"})
    cache = RepoCache(root=tmp_path / "cache")
    cache.fetch(repo.url)
    with pytest.raises(GitError, match="symlink sub/up points outside the repository"):
        cache.checkout(repo.url, sha)
    # A link that stays inside is fine.
    repo.commit("dev", "drop the bad link", remove=("sub/up",))
    tree = cache.checkout(repo.url, cache.resolve(repo.url, "dev"))
    assert (tree / "inside").read_text() == "# test repo\n"


def test_ssh_trusts_only_the_configured_host_keys(tmp_path: Path) -> None:
    # What the real ssh makes of the command git gets (`ssh -G` prints the effective config).
    known = tmp_path / "ssh_known_hosts"
    known.write_text(
        "github.com ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    for hosts, expected in ((known, str(known)), (tmp_path / "missing", "/dev/null")):
        command = shlex.split(ssh_command("/tmp/key", hosts))
        effective = subprocess.run(
            [*command, "-G", "github.com"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert "stricthostkeychecking true" in effective
        assert "batchmode yes" in effective
        assert f"userknownhostsfile {expected}" in effective
        assert "globalknownhostsfile /dev/null" in effective
        assert "identitiesonly yes" in effective


def test_basic_credentials_never_follow_a_redirect(repo: Repo, tmp_path: Path) -> None:
    # git's own view of the configuration our credentials bring (no HTTP server here).
    cache = RepoCache(root=tmp_path / "cache")
    out = cache._git(
        "config",
        "--get-regexp",
        "^http\\.",
        creds=Credentials("u", "p", url=repo.url),
        cwd=repo.work,
    )
    assert "http.followredirects false" in out
    assert "http.extraheader Authorization: Basic" in out


def test_the_one_git_wrapper_reports_gits_own_words(tmp_path: Path) -> None:
    """herd_core.git runs git for the operator's cache and the devkit's repositories alike."""
    from herd_core import git as core_git

    with pytest.raises(core_git.GitError, match=r"git rev-parse failed: .*not a git repository"):
        core_git.run("rev-parse", "HEAD", cwd=tmp_path)
    repo = Repo.create(tmp_path / "r", {"a.txt": "a\n"})
    assert core_git.run("show", "main:a.txt", cwd=repo.origin) == "a"
    archive = core_git.output("archive", "--format=tar", "main", cwd=repo.origin)
    assert archive[257:262] == b"ustar"  # bytes as git wrote them


def test_only_branches_tags_and_their_commits_resolve(repo: Repo, tmp_path: Path) -> None:
    """A fork's pull request (refs/pull/N/head on GitHub) is anyone's commit: never a
    revision. Nor is any other ref outside branches and tags, or revision syntax."""
    dev = repo.commit("dev", "one", {"a.yaml": "a: 1\n"})
    git("tag", "v1", cwd=repo.work)
    git("tag", "-a", "-m", "release", "v1-annotated", cwd=repo.work)
    git("push", "--quiet", "origin", "v1", "v1-annotated", cwd=repo.work)
    # A commit on no branch, pushed where GitHub keeps a pull request's head.
    git("checkout", "--quiet", "--detach", cwd=repo.work)
    (repo.work / "evil.yaml").write_text("evil: true\n")
    git("add", "evil.yaml", cwd=repo.work)
    git("commit", "--quiet", "-m", "from a fork", cwd=repo.work)
    pull = git("rev-parse", "HEAD", cwd=repo.work)
    git("push", "--quiet", "origin", "HEAD:refs/pull/1/head", "HEAD:refs/keep/x", cwd=repo.work)
    assert git("rev-parse", "refs/pull/1/head", cwd=repo.origin) == pull

    cache = RepoCache(root=tmp_path / "cache")
    for good, sha in [
        ("dev", dev),
        ("refs/heads/dev", dev),
        ("v1", dev),
        ("refs/tags/v1", dev),
        ("v1-annotated", dev),
        ("HEAD", repo.head("main")),
        (dev, dev),
        (repo.head("main"), repo.head("main")),  # an older commit of a branch
    ]:
        assert cache.resolve(repo.url, good) == sha, good
    for bad in [
        "refs/pull/1/head",
        "pull/1/head",
        "refs/keep/x",
        pull,
        "dev~1",
        "dev^{commit}",
        "HEAD~1",
        "dev@{0}",
        dev[:12],
        ":/one",
        "refs/heads",
    ]:
        with pytest.raises(GitError, match="not found"):
            cache.resolve(repo.url, bad)
    mirror = cache.mirror(repo.url)
    assert git("for-each-ref", "--format=%(refname)", "refs/pull", "refs/keep", cwd=mirror) == ""

    # A mirror cloned before (--mirror: every ref, refs/pull too) still refuses them.
    old = RepoCache(root=tmp_path / "old")
    old.mirror(repo.url).parent.mkdir(parents=True)
    git("clone", "--mirror", "--quiet", repo.url, str(old.mirror(repo.url)), cwd=tmp_path)
    for bad in ["refs/pull/1/head", "pull/1/head", pull]:
        with pytest.raises(GitError, match="not found"):
            old.resolve(repo.url, bad)
    assert old.resolve(repo.url, "dev") == dev


# -- what a mirror and a checkout may hold (issue 31 N12) ---------------------------------
def blobs(mirror: Path) -> set[str]:
    """The file contents the mirror holds (listing them fetches nothing)."""
    out = git("cat-file", "--batch-all-objects", "--batch-check", cwd=mirror)
    return {line.split()[0] for line in out.splitlines() if line.split()[1] == "blob"}


def test_a_checkout_holds_only_what_rendering_reads(repo: Repo, tmp_path: Path) -> None:
    """An Application's path, its value files elsewhere in the repository, and what symlinks
    among them point at (a chart's library, as charts/herd-*/charts/herd-lib): nothing more
    is written, nor fetched (a partial clone), however large the rest of the repository."""
    lib = repo.work / "charts" / "demo" / "charts"
    lib.mkdir(parents=True)
    (lib / "lib").symlink_to("../../lib")  # a link to a folder outside the path
    (repo.work / "charts" / "lib" / "templates").mkdir(parents=True)
    (repo.work / "charts" / "lib" / "templates" / "_x.tpl").symlink_to("../../../shared/x.tpl")
    sha = repo.commit(
        "dev",
        "a monorepo",
        {
            "charts/demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            "charts/lib/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
            "shared/x.tpl": "{{/* linked from the library */}}\n",
            "apps/demo/values.yaml": "a: 1\n",
            "apps/other/values.yaml": "b: 2\n",
            "other/huge.yaml": "x: " + "y" * 100_000 + "\n",
        },
    )
    cache = RepoCache(root=tmp_path / "cache")
    assert cache.resolve(repo.url, "dev") == sha
    mirror = cache.mirror(repo.url)
    assert not blobs(mirror)  # commits and trees only, until a checkout
    source = Source("charts/demo", value_files=("../../apps/demo/values.yaml", "/etc/passwd"))
    tree = cache.checkout(repo.url, sha, paths=source.reads())
    files = sorted(
        str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_symlink() or not p.is_dir()
    )
    assert files == [
        "apps/demo/values.yaml",
        "charts/demo/Chart.yaml",
        "charts/demo/charts/lib",
        "charts/lib/Chart.yaml",
        "charts/lib/templates/_x.tpl",
        "shared/x.tpl",
    ]
    assert (tree / "charts/demo/charts/lib/templates/_x.tpl").read_text().startswith("{{/*")
    assert not Path("/etc/passwd").samefile(tree) and not (tree / "etc").exists()
    # Only those contents were fetched: none of other/ or apps/other.
    unread = {git("rev-parse", f"{sha}:{p}", cwd=repo.origin) for p in ("other", "apps/other")}
    unread |= {
        git("rev-parse", f"{sha}:{p}", cwd=repo.origin)
        for p in ("other/huge.yaml", "apps/other/values.yaml")
    }
    assert not blobs(mirror) & unread
    # The whole tree is still one checkout away (path ".", as before).
    assert (cache.checkout(repo.url, sha) / "other" / "huge.yaml").is_file()
    # A glob in a path is a name, never a pattern.
    assert not list(cache.checkout(repo.url, sha, paths=("apps/*",)).iterdir())


def test_the_size_cap_stops_git_and_keeps_nothing(repo: Repo, tmp_path: Path) -> None:
    mib = 1024 * 1024
    # Past the cap while cloning: git is stopped, no mirror is left.
    whole = Repo.create(tmp_path / "whole", {"README.md": "x\n"})
    git("config", "uploadpack.allowFilter", "false", cwd=whole.origin)  # cloned whole
    (whole.work / "big.bin").write_bytes(os.urandom(3 * mib))
    whole.commit("dev", "big", {})
    cache = RepoCache(root=tmp_path / "cache", max_bytes=mib)
    with pytest.raises(TooLarge, match=r"the mirror of file://.* larger than the limit of 1 MiB"):
        cache.resolve(whole.url, "dev")
    assert not cache.mirror(whole.url).exists()
    assert [p.name for p in cache.mirror(whole.url).parent.iterdir()] == [
        f"{cache.mirror(whole.url).name}.lock"
    ]

    # A checkout past the cap (its files, or what a partial clone fetched for them).
    sha = repo.commit(
        "dev",
        "one large folder",
        {"small/a.yaml": "a: 1\n", "large/text.yaml": "x: " + "y" * (2 * mib) + "\n"},
    )
    (repo.work / "random").mkdir()
    (repo.work / "random" / "r.bin").write_bytes(os.urandom(2 * mib))
    sha = repo.commit("dev", "random", {})
    assert cache.resolve(repo.url, "dev") == sha
    with pytest.raises(TooLarge, match=rf"the checkout of large at {sha[:12]} is larger"):
        cache.checkout(repo.url, sha, paths=("large",))
    with pytest.raises(TooLarge, match=rf"fetched for the checkout of random at {sha[:12]}"):
        cache.checkout(repo.url, sha, paths=("random",))
    assert [p.name for p in cache.root.iterdir()] == ["repos"]  # no tree, no index left
    # Another path of the same commit is fine; the mirror past the limit (the content
    # fetched for `random`) is cloned anew at the next fetch.
    assert (cache.checkout(repo.url, sha, paths=("small",)) / "small" / "a.yaml").is_file()
    assert disk_bytes(cache.mirror(repo.url)) > mib
    assert cache.resolve(repo.url, "dev") == sha
    assert disk_bytes(cache.mirror(repo.url)) < mib


# -- the Applications of a monorepo (issue 33) ---------------------------------------------
def test_many_path_sets_of_one_commit_share_its_whole_tree(repo: Repo, tmp_path: Path) -> None:
    """The first path sets of a commit are checked out apart; from SHARE_WHOLE_AFTER on, one
    checkout of the whole tree serves them all (one git checkout, not one per app)."""
    apps = [f"apps/a{i}" for i in range(SHARE_WHOLE_AFTER + 4)]
    sha = repo.commit("dev", "a monorepo", {f"{a}/cm.yaml": f"name: {a}\n" for a in apps})
    cache = RepoCache(root=tmp_path / "cache")
    assert cache.resolve(repo.url, "dev") == sha
    trees = [cache.checkout(repo.url, sha, paths=(a,)) for a in apps]
    apart = trees[: SHARE_WHOLE_AFTER - 1]
    whole = trees[SHARE_WHOLE_AFTER - 1 :]
    assert len(set(apart)) == len(apart) and all(t.name != sha for t in apart)
    assert {t.name for t in whole} == {sha}  # the whole tree's folder: the sha alone
    assert all((whole[0] / a / "cm.yaml").is_file() for a in apps)
    # Each still reads its own path from it; another commit starts counting again.
    sha2 = repo.commit("dev", "next", {"apps/a0/cm.yaml": "name: changed\n"})
    assert cache.resolve(repo.url, "dev") == sha2
    assert cache.checkout(repo.url, sha2, paths=("apps/a0",)).name != sha2


def test_a_refused_whole_tree_leaves_each_its_own_paths(repo: Repo, tmp_path: Path) -> None:
    """A symlink out of the tree in one app's folder refuses that app only, as before the
    sharing: the whole tree is refused, and the others keep their own checkouts."""
    apps = [f"apps/a{i}" for i in range(SHARE_WHOLE_AFTER + 2)]
    bad = repo.work / "apps" / "bad"
    bad.mkdir(parents=True)
    (bad / "passwd").symlink_to("/etc/passwd")
    sha = repo.commit("dev", "one bad app", {f"{a}/cm.yaml": "x: 1\n" for a in apps})
    cache = RepoCache(root=tmp_path / "cache")
    assert cache.resolve(repo.url, "dev") == sha
    trees = [cache.checkout(repo.url, sha, paths=(a,)) for a in apps]
    assert all((t / a / "cm.yaml").is_file() for t, a in zip(trees, apps, strict=True))
    assert all(t.name != sha for t in trees)
    with pytest.raises(GitError, match="points outside the repository"):
        cache.checkout(repo.url, sha, paths=("apps/bad",))


def test_a_revision_is_resolved_once_per_fetch(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one fetch, a thousand apps of a branch resolve it with one for-each-ref; the
    next fetch resolves it again (a push moved it)."""
    cache = RepoCache(root=tmp_path / "cache")
    sha = cache.resolve(repo.url, "dev")
    looked = 0
    resolve = RepoCache._resolve

    def counted(self: RepoCache, *args: str) -> str:
        nonlocal looked
        looked += 1
        return resolve(self, *args)

    monkeypatch.setattr(RepoCache, "_resolve", counted)
    since = gitcache.ticket()
    token = gitcache.fresh_since.set(since)  # as after a push: one fetch for all
    try:
        assert [cache.resolve(repo.url, "dev") for _ in range(20)] == [sha] * 20
        assert looked == 1
        pushed = repo.commit("dev", "pushed", {"x.yaml": "x: 2\n"})
    finally:
        gitcache.fresh_since.reset(token)
    assert cache.resolve(repo.url, "dev") == pushed  # a fetch of its own: resolved anew
    assert looked == 2


def test_a_resolve_waits_for_a_mirror_cloned_anew(repo: Repo, tmp_path: Path) -> None:
    """A fetch that finds its mirror past the cap clones it anew, removing the old one under
    the mirror's lock: a resolve sharing an earlier fetch waits for it, not `not a git
    repository`."""
    cache = RepoCache(root=tmp_path / "cache")
    since = gitcache.ticket()
    cache.resolve(repo.url, "dev")
    mirror = cache.mirror(repo.url)
    waiting = threading.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("waiting for the lock of mirror"):
                waiting.set()

    def resolve() -> str:
        gitcache.fresh_since.set(since)  # the fetch above is fresh enough: no fetch of its own
        return cache.resolve(repo.url, "main")  # not resolved since: git reads the mirror

    handler, logger = Waiting(), logging.getLogger(gitcache.__name__)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)  # setLevel: it clears the logger's cached isEnabledFor
    try:
        with ThreadPoolExecutor(1) as pool:
            with cache._flock(mirror.name, exclusive=True):  # as the clone anew holds it
                mirror.rename(mirror.with_name("old"))
                answer = pool.submit(resolve)
                assert waiting.wait(10), "the resolve waited for the mirror's lock"
                mirror.with_name("old").rename(mirror)
            assert answer.result(10) == repo.head("main")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
