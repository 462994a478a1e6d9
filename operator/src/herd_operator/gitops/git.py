"""Fetch a revision of a repository into a local cache: one bare mirror per repository and
credentials, one checkout per commit and set of paths (reused), so a resync of an unchanged
commit costs one fetch. SSH host keys come only from the operator's known_hosts file (no
trust on first use).

Nothing here may fill the operator's disk (a 2 Gi emptyDir in the chart). A mirror is a
partial clone (`--filter=blob:none`): commits and trees only, each file's content fetched
when a checkout needs it. A checkout writes only the paths it is asked for (an
Application's path, its value files, and what symlinks among them point at inside the
repository), not the whole tree, until the Applications of a monorepo ask for
`SHARE_WHOLE_AFTER` different path sets of one commit: then the whole tree of that commit is
checked out once and shared by all of them (one git checkout and one fetch of content, not
one per Application), unless it is refused (past the cap, a symlink out of the tree), when
each keeps its own paths. And `max_bytes` caps a mirror and a checkout alike, while
git writes them: past it, git is stopped and TooLarge raised. History is not shallow:
whether a commit is on a branch or tag (resolve) needs it; commits and trees are small next
to the files. Partial clone needs the server's consent: hosts such as GitHub give it; a
`file://` repository only with `uploadpack.allowFilter` (else git clones it whole, as it
always does a plain local path); the cap holds either way.

A mirror fetched with one set of credentials is never served to a request with others (or
none): the cache key is the URL and a digest of the credentials. A mirror holds branches and
tags only, and a revision must be one of them (or a commit they reach): a fork's pull request
(refs/pull/*) never resolves. One clone or fetch of a mirror runs at a time (a lock per
mirror, shared by every cache of the root in this process, and a lock file for other
processes), and the callers that asked before one began share it. Every checkout has its own
index file, so checkouts of one repository run side by side. A checkout with a symlink that
resolves outside the tree is refused before anything reads it: Helm's chart loader and our
manifest reader would otherwise follow it to any file the operator can read.

Credentials come from a Secret: `username` + `password` (HTTPS, sent as a header, never in
the URL or on disk) or `sshPrivateKey` (SSH). URL rewrites (git's insteadOf) let `make up`
point the GitHub URL in clusters/ at a local bare repository.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import errno
import fcntl
import glob
import hashlib
import itertools
import logging
import os
import posixpath
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from herd_core import git
from herd_core.git import GitError

__all__ = [
    "Credentials",
    "Escaping",
    "GitError",
    "RepoCache",
    "TooLarge",
    "cache_key",
    "checkout_paths",
    "disk_bytes",
    "escaping_symlinks",
    "ssh_command",
]

SHA = re.compile(r"^[0-9a-f]{40}$")
MiB = 1024 * 1024
log = logging.getLogger(__name__)


class TooLarge(GitError):
    """A mirror or checkout grew past the cache's `max_bytes`: not a passing failure."""


class Escaping(GitError):
    """A checkout holds a symlink that resolves outside the tree: refused, as it is."""


def disk_bytes(folder: Path) -> int:
    """The bytes of the files under `folder` (links not followed); 0 if it is gone. Files
    that vanish meanwhile (git's temporary ones) are skipped."""
    total = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def checkout_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """Repository paths in normal form, sorted, without repeats: `("."),` for the whole tree.
    One that leaves the repository (absolute, `..`) is dropped: nothing may read it, and
    render refuses it with its own message."""
    out = set()
    for path in paths:
        normal = posixpath.normpath(path or ".")
        if normal == ".":
            return (".",)
        if normal.startswith(("/", "../")) or normal == "..":
            continue
        out.add(normal)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)

    url: str | None = None

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> Credentials:
        def get(key: str) -> str | None:
            value = data.get(key)
            return base64.b64decode(value).decode() if value else None

        return cls(get("username"), get("password"), get("sshPrivateKey"), get("url"))

    def digest(self) -> str:
        material = "\0".join([self.username or "", self.password or "", self.ssh_private_key or ""])
        return hashlib.sha256(material.encode()).hexdigest()


def cache_key(url: str, creds: Credentials | None) -> str:
    return hashlib.sha256(f"{url}\0{creds.digest() if creds else ''}".encode()).hexdigest()[:16]


def ssh_command(key_file: str | None, known_hosts: Path | None) -> str:
    """ssh for git: host keys only from `known_hosts` (no trust on first use, not the
    user's or the system's files), never a prompt."""
    hosts = str(known_hosts) if known_hosts and known_hosts.is_file() else "/dev/null"
    parts = [
        "ssh",
        "-o BatchMode=yes",
        "-o StrictHostKeyChecking=yes",
        f"-o UserKnownHostsFile={shlex.quote(hosts)}",
        "-o GlobalKnownHostsFile=/dev/null",
    ]
    if key_file:
        parts += [f"-i {shlex.quote(key_file)}", "-o IdentitiesOnly=yes"]
    return " ".join(parts)


def escaping_symlinks(tree: Path) -> list[str]:
    """Symlinks under `tree` that resolve outside it (or loop), relative to `tree`."""
    root = tree.resolve()
    bad = []
    for folder, dirs, files in os.walk(tree):  # does not follow symlinked folders
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=False)
            except (OSError, RuntimeError):  # a loop
                bad.append(str(path.relative_to(tree)))
                continue
            if target != root and root not in target.parents:
                bad.append(str(path.relative_to(tree)))
    return sorted(bad)


def dangling_targets(tree: Path, in_commit: Callable[[str], bool]) -> list[str]:
    """What the symlinks under `tree` point at inside it but is not there (a partial
    checkout left it out), as repository paths: the target if the commit has it, else the
    first missing step towards it (a link to a link, checked out in the next round)."""
    root = tree.resolve()
    out: set[str] = set()
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=False)
            except (OSError, RuntimeError):
                continue  # a loop: escaping_symlinks refuses it
            if target.exists() or (target != root and root not in target.parents):
                continue
            rel = target.relative_to(root).as_posix()
            if in_commit(rel):
                out.add(rel)
                continue
            parts = rel.split("/")
            for end in range(1, len(parts)):
                step = "/".join(parts[:end])
                if not os.path.lexists(root / step):
                    if in_commit(step):
                        out.add(step)
                    break
    return sorted(out)


# What a mirror holds and a revision may name: branches and tags. Not refs/pull/* (anyone's
# fork can put a commit there) nor any other ref a host keeps.
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


# Distinct path sets of one commit after which its whole tree is checked out and shared.
SHARE_WHOLE_AFTER = 4
_WHOLE, _REFUSED = "whole", "refused"
_COMMITS_KEPT = 16  # commits per mirror whose path sets are counted


@dataclass
class _Mirror:
    """What the RepoCaches of one root in this process share about one mirror: the lock of
    its clone and fetches, and the last fetch, whose result the callers waiting on it reuse."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: int = -1  # ticket taken as the last fetch began
    finished: int = -1  # `started` of the last fetch once it ended
    error: GitError | None = None  # why it failed, if it did
    checkouts: int = 0  # under way, each perhaps fetching content into the mirror
    # What revisions resolved to since the last fetch ended (its ticket, {revision: sha}).
    resolved: tuple[int, dict[str, str]] = (-1, {})
    # Per commit (newest last): the path sets asked for, or _WHOLE / _REFUSED.
    trees: dict[str, set[tuple[str, ...]] | str] = field(default_factory=dict)

    def whole(self, sha: str, wanted: tuple[str, ...]) -> bool:
        """Whether `wanted` of `sha` is served from a checkout of the whole tree."""
        with _GUARD:
            seen = self.trees.pop(sha, None)
            if seen is None:
                seen = set()
            if isinstance(seen, set):
                seen.add(wanted)
                if len(seen) >= SHARE_WHOLE_AFTER:
                    seen = _WHOLE
            self.trees[sha] = seen  # last: the newest
            while len(self.trees) > _COMMITS_KEPT:
                del self.trees[next(iter(self.trees))]
            return seen == _WHOLE

    def refuse_whole(self, sha: str) -> None:
        with _GUARD:
            self.trees[sha] = _REFUSED


# Per root, not per RepoCache: the operator once made several caches at start (one per racing
# handler thread), each with its own locks, and their clones of one repository collided.
_MIRRORS: dict[tuple[str, str], _Mirror] = {}
_TREES: dict[tuple[str, str], threading.Lock] = {}
_GUARD = threading.Lock()
_TICKETS = itertools.count()


def _ticket() -> int:
    with _GUARD:
        return next(_TICKETS)


def ticket() -> int:
    """Now, in the order fetches begin: a push webhook's moment, for `fresh_since`."""
    return _ticket()


# A fetch that began after this ticket is fresh enough for the caller (None: after the
# call). A push wakes its Applications with the push's moment: the thousand apps of one
# repository then share the first fetch that began after the push, not one each.
fresh_since: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "fresh_since", default=None
)


@dataclass
class RepoCache:
    root: Path
    rewrites: Mapping[str, str] = field(default_factory=dict)
    known_hosts: Path | None = None  # SSH host keys (a ConfigMap's file); none: SSH refused
    # The most bytes a mirror, or a checkout, may take on disk (HERD_GIT_MAX_BYTES).
    max_bytes: int = 512 * MiB

    def _shared(self, key: str) -> _Mirror:
        with _GUARD:
            return _MIRRORS.setdefault((os.path.realpath(self.root), key), _Mirror())

    def _tree_lock(self, key: str) -> threading.Lock:
        with _GUARD:
            return _TREES.setdefault((os.path.realpath(self.root), key), threading.Lock())

    @contextlib.contextmanager
    def _flock(self, key: str, exclusive: bool) -> Iterator[None]:
        """The mirror's lock file, for other processes on this root too (the CLI, a second
        operator): a clone or fetch runs alone; checkouts, which read it, side by side."""
        path = self.root / "repos" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                log.debug("waiting for the lock of mirror %s", key)
                fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        creds: Credentials | None = None,
        timeout: float = 120,
        extra_env: Mapping[str, str] | None = None,
        watch: Callable[[], None] | None = None,
    ) -> str:
        config: list[str] = ["-c", "protocol.file.allow=always", "-c", "advice.detachedHead=false"]
        for new, old in self.rewrites.items():
            config += ["-c", f"url.{new}.insteadOf={old}"]
        env = {"GIT_ASKPASS": "/bin/false", **(extra_env or {})}
        key_file = None
        if creds and creds.username and creds.password:
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            # Through the environment, so the credential never shows in a process listing; no
            # redirects, which would carry the header to another host.
            env |= {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
                "GIT_CONFIG_KEY_1": "http.followRedirects",
                "GIT_CONFIG_VALUE_1": "false",
            }
        if creds and creds.ssh_private_key:
            fd, name = tempfile.mkstemp(prefix="herd-key-")
            with os.fdopen(fd, "w") as f:
                f.write(creds.ssh_private_key.strip() + "\n")
            key_file = name
        env["GIT_SSH_COMMAND"] = ssh_command(key_file, self.known_hosts)
        try:
            return git.run(*args, cwd=cwd, env=env, config=config, timeout=timeout, watch=watch)
        finally:
            if key_file:
                os.unlink(key_file)

    def mirror(self, url: str, creds: Credentials | None = None) -> Path:
        return self.root / "repos" / cache_key(url, creds)

    def fetch(self, url: str, creds: Credentials | None = None) -> Path:
        """The mirror of `url`, cloned or fetched after this call began (or after the
        `fresh_since` ticket, if set). One clone or fetch of a mirror at a time, and callers
        that asked before it began share it: the Applications of one repository fetch it
        once, however many reconcile at the same moment."""
        mirror = self.mirror(url, creds)
        shared = self._shared(mirror.name)
        asked = _ticket()
        since = fresh_since.get()
        if since is not None:
            asked = min(asked, since)
        with shared.lock:
            if shared.started > asked:
                # It began after we asked, so it saw the remote as it was then or later.
                if shared.error is not None:
                    raise type(shared.error)(str(shared.error))
                return mirror
            shared.started, shared.error = _ticket(), None
            try:
                with self._flock(mirror.name, exclusive=True):
                    self._update(url, mirror, creds)
            except BaseException as err:
                shared.error = err if isinstance(err, GitError) else GitError(repr(err))
                raise
            finally:
                shared.finished = shared.started
        return mirror

    def _cap(self, folder: Path, what: str, base: int = 0) -> Callable[[], None]:
        """A `watch` that stops git once `folder` holds more than `max_bytes` (more than
        `base` bytes)."""

        def check() -> None:
            if disk_bytes(folder) - base > self.max_bytes:
                raise TooLarge(
                    f"{what} is larger than the limit of {self.max_bytes // MiB} MiB "
                    f"({self.max_bytes} bytes, HERD_GIT_MAX_BYTES): refused"
                )

        return check

    def _update(self, url: str, mirror: Path, creds: Credentials | None) -> None:
        if (mirror / "HEAD").exists():
            # Left by a git stopped midway (a checkout's fetch past the cap, a killed
            # operator); with the lock held exclusively, no git is writing them now.
            for tmp in itertools.chain(
                (mirror / "objects" / "pack").glob("tmp_*"), (mirror / "objects").glob("tmp_*")
            ):
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
            try:
                cap = self._cap(mirror, f"the mirror of {url}")
                self._git(
                    "fetch",
                    "--prune",
                    "--quiet",
                    "--force",
                    "origin",
                    *REFSPECS,
                    cwd=mirror,
                    creds=creds,
                    watch=cap,
                )
                cap()
                return
            except TooLarge:
                # The content that checkouts fetched over time counts too: a fresh partial
                # clone holds none of it. Only if that is too large as well is it refused.
                log.info("mirror of %s past the limit: cloned anew", url)
        self._clone(url, mirror, creds)

    def _clone(self, url: str, mirror: Path, creds: Credentials | None) -> None:
        # We hold the mirror's lock, so no attempt is under way: what is here is a dead one's
        # (the operator killed mid-clone), as is a folder without HEAD.
        for old in mirror.parent.glob(f"{glob.escape(mirror.name)}.tmp*"):
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(mirror, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{mirror.name}.tmp-", dir=mirror.parent))
        try:
            # --bare, not --mirror: only branches and tags (--mirror takes refs/pull/* too).
            cap = self._cap(tmp, f"the mirror of {url}")
            self._git(
                "clone",
                "--bare",
                "--quiet",
                "--filter=blob:none",
                url,
                str(tmp),
                creds=creds,
                watch=cap,
            )
            cap()
            try:
                tmp.rename(mirror)
            except OSError as err:
                # A process without our lock (an older operator) made it meanwhile: it is
                # as good as ours.
                if (
                    err.errno not in (errno.EEXIST, errno.ENOTEMPTY)
                    or not (mirror / "HEAD").exists()
                ):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def resolve(self, url: str, revision: str, creds: Credentials | None = None) -> str:
        """The commit `revision` points at now: a branch or a tag (by name, or as refs/heads/x
        or refs/tags/x), HEAD (the default branch), or a full commit sha that a branch or tag
        reaches. Nothing else: not refs/pull/*, `main~1` or a commit only a fork's pull
        request has. What a Project admits is a repository's branches and tags."""
        mirror = self.fetch(url, creds)
        shared = self._shared(mirror.name)
        with _GUARD:
            fetched = shared.finished if shared.started == shared.finished else None
            generation, known = shared.resolved
            if fetched is not None and generation == fetched and revision in known:
                return known[revision]  # the thousand apps of one push: one for-each-ref
        # Shared, as a checkout's: a fetch that clones a mirror past the cap anew removes it.
        with self._flock(mirror.name, exclusive=False):
            commit = self._resolve(mirror, url, revision)
        with _GUARD:
            # Kept only if no fetch began meanwhile (what it read may be older than that).
            if fetched is not None and shared.started == shared.finished == fetched:
                if shared.resolved[0] != fetched:
                    shared.resolved = (fetched, {})
                shared.resolved[1][revision] = commit
        return commit

    def _resolve(self, mirror: Path, url: str, revision: str) -> str:
        missing = GitError(
            f"revision {revision} not found in {url} (a branch, a tag, HEAD or the full sha "
            "of a commit on one)"
        )
        if revision == "HEAD":
            try:
                revision = self._git("symbolic-ref", "--quiet", "HEAD", cwd=mirror)
            except GitError:  # a detached HEAD upstream: its commit, if a branch or tag has it
                try:
                    revision = self._git("rev-parse", "--verify", "--quiet", "HEAD", cwd=mirror)
                except GitError:
                    raise missing from None  # an empty repository
        if SHA.match(revision):
            commit = self._reachable(mirror, revision)
            if commit is None:
                raise missing
            return commit
        names = (
            [revision]
            if revision.startswith(("refs/heads/", "refs/tags/"))
            else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        )
        # for-each-ref takes names, never revision syntax (`x~1`, `x@{1}`, `:/text`); its
        # patterns also match below a name, so the exact name is picked here.
        out = self._git(
            "for-each-ref",
            "--format=%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)",
            *names,
            cwd=mirror,
        )
        found = {line.split(" ", 1)[0]: line.split(" ")[1:] for line in out.splitlines()}
        for name in names:
            if name not in found:
                continue
            kind, obj, peeled_kind, peeled = (found[name] + ["", ""])[:4]
            if kind == "commit":
                return obj
            if peeled_kind == "commit":
                return peeled
            try:  # a tag of a tag
                return self._git(
                    "rev-parse", "--verify", "--quiet", f"{obj}^{{commit}}", cwd=mirror
                )
            except GitError:
                continue  # a tag of a tree or blob
        raise missing

    def _reachable(self, mirror: Path, sha: str) -> str | None:
        """The commit `sha` names, if a branch or tag of the mirror has it."""
        try:
            commit = self._git("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", cwd=mirror)
            reached = self._git(
                "for-each-ref",
                "--count=1",
                "--format=%(refname)",
                f"--contains={commit}",
                "refs/heads/",
                "refs/tags/",
                cwd=mirror,
            )
        except GitError:
            return None
        return commit if reached else None

    def checkout(
        self,
        url: str,
        sha: str,
        creds: Credentials | None = None,
        paths: Iterable[str] = (".",),
    ) -> Path:
        """A read-only tree of `sha` with `paths` (and what symlinks among them point at in
        the repository), made once per commit and paths, then reused; once
        SHARE_WHOLE_AFTER path sets of the commit were asked for, its whole tree, shared."""
        if not SHA.match(sha):  # resolve's answer, which names the folder
            raise GitError(f"not a commit sha: {sha!r}")
        wanted = checkout_paths(paths)
        key = cache_key(url, creds)
        if wanted != (".",) and self._shared(key).whole(sha, wanted):
            try:
                return self._checkout(url, sha, creds, (".",), key, whole=True)
            except (TooLarge, Escaping) as err:
                # Each keeps its own paths, as before: only a part may be what was refused.
                log.info("whole tree of %s at %s refused, paths kept apart: %s", url, sha, err)
                self._shared(key).refuse_whole(sha)
            except GitError as err:  # passing, perhaps: the whole tree is tried again later
                log.info("whole tree of %s at %s failed, paths kept apart: %s", url, sha, err)
        return self._checkout(url, sha, creds, wanted, key)

    def _checkout(
        self,
        url: str,
        sha: str,
        creds: Credentials | None,
        wanted: tuple[str, ...],
        key: str,
        whole: bool = False,
    ) -> Path:
        name = sha
        if wanted != (".",):
            name += "-" + hashlib.sha256("\0".join(wanted).encode()).hexdigest()[:12]
        tree = self.root / "trees" / key / name
        if self._reuse(tree):
            return tree
        with self._tree_lock(f"{key}@{name}"):
            if self._reuse(tree):
                return tree
            if whole and self._shared(key).trees.get(sha) == _REFUSED:
                # Refused while this caller waited for the lock: not fetched once per caller.
                raise TooLarge(f"the whole tree at {sha[:12]} was refused")
            tmp = Path(tempfile.mkdtemp(dir=self.root))
            index = tmp.with_name(tmp.name + ".index")
            try:
                # Shared: no clone or fetch rewrites the mirror (a gc among them) meanwhile.
                with self._flock(key, exclusive=False):
                    shared = self._shared(key)
                    with _GUARD:
                        shared.checkouts += 1
                    try:
                        self._write_tree(url, sha, creds, wanted, tmp, index, shared)
                    finally:
                        with _GUARD:
                            shared.checkouts -= 1
                escaping = escaping_symlinks(tmp)
                if escaping:
                    raise Escaping(
                        f"symlink {escaping[0]} points outside the repository"
                        + (f" (and {len(escaping) - 1} more)" if len(escaping) > 1 else "")
                    )
                tree.parent.mkdir(parents=True, exist_ok=True)
                try:
                    tmp.rename(tree)
                except OSError as err:
                    # Another process made the same tree meanwhile: the same files.
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not tree.is_dir():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                index.unlink(missing_ok=True)
            self._prune_trees(tree.parent, keep=tree)
        return tree

    def _write_tree(
        self,
        url: str,
        sha: str,
        creds: Credentials | None,
        wanted: tuple[str, ...],
        tmp: Path,
        index: Path,
        shared: _Mirror,
        rounds: int = 10,
    ) -> None:
        """Check `wanted` out of the mirror into `tmp`, then what the symlinks written point
        at inside the repository (a chart's `charts/lib -> ../../lib`), a round per level of
        links. In a partial clone git fetches the content of these paths only."""
        mirror = self.mirror(url, creds)
        where = f"{'' if wanted == ('.',) else ' of ' + ', '.join(wanted)} at {sha[:12]}"
        # What a partial clone fetches for it lands in the mirror before any file is written:
        # counted as it comes. The next fetch clones a mirror past the limit anew.
        fetched = self._cap(
            mirror, f"the content fetched for the checkout{where}", disk_bytes(mirror)
        )
        written = self._cap(tmp, f"the checkout{where}")

        def watch() -> None:
            try:
                fetched()
            except TooLarge as err:
                if shared.checkouts > 1:  # theirs may be what grew: asked again shortly
                    raise GitError(f"{err}, with other checkouts of {url} fetching") from None
                raise
            written()

        tried: set[str] = set()
        todo = list(wanted)
        for _ in range(rounds):
            tried.update(todo)
            present = [p for p in todo if p == "." or self._in_commit(mirror, sha, p)]
            if present:
                self._git(
                    f"--work-tree={tmp}",
                    "checkout",
                    "--force",
                    sha,
                    "--",
                    *present,
                    cwd=mirror,
                    creds=creds,  # a partial clone fetches the content it lacks
                    timeout=300,
                    # An index of its own: the mirror's shared one makes concurrent checkouts
                    # of two commits fail with `index.lock exists`. Paths are names, never
                    # globs (`*` in an Application's path).
                    extra_env={"GIT_INDEX_FILE": str(index), "GIT_LITERAL_PATHSPECS": "1"},
                    watch=watch,
                )
                watch()
            todo = [
                p
                for p in dangling_targets(tmp, lambda p: self._in_commit(mirror, sha, p))
                if p not in tried
            ]
            if not todo:
                return

    def _in_commit(self, mirror: Path, sha: str, path: str) -> bool:
        """Whether `path` is in commit `sha` (from its trees: no content is fetched)."""
        try:
            self._git("rev-parse", "--verify", "--quiet", f"{sha}:{path}", cwd=mirror)
        except GitError:
            return False
        return True

    @staticmethod
    def _reuse(tree: Path) -> bool:
        try:
            os.utime(tree)  # last use: pruning spares trees another reconcile is reading
        except FileNotFoundError:
            return False
        return True

    def _prune_trees(self, folder: Path, keep: Path, max_trees: int = 5, idle: float = 600) -> None:
        """Drop the least recently used trees beyond `max_trees`, once unused for `idle` s."""
        now = time.time()
        trees = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in trees[:-max_trees]:
            if old != keep and now - old.stat().st_mtime > idle:
                shutil.rmtree(old, ignore_errors=True)
