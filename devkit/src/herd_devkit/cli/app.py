"""`herd app status|sync|diff|history|rollback` and `herd promote`."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from rich.console import Console, Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from herd_core.constants import GROUP, VERSION
from herd_core.git import GitError
from herd_devkit.cli.context import clusters, local_env
from herd_devkit.local.gitrepo import git
from herd_devkit.local.tools import binary
from herd_devkit.settings import get_settings
from herd_devkit.validate import environment_apps
from herd_operator.gitops.engine import Application, ComparisonError, Engine
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.plan import Key, changed_paths, comparable
from herd_operator.gitops.render import Source
from herd_operator.handlers.application import (
    REFRESH_ANNOTATION,
    last_healthy,
    parse_time,
    stamp,
)

app = typer.Typer(no_args_is_help=True, help="Argo-style Applications.")
console = Console()
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Default: the clusters of `make up`")
NamespaceOpt = typer.Option("herd-system", "--namespace", "-n")


def _apps(api: client.ApiClient) -> list[dict[str, Any]]:
    found = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, "applications")
    return list(found["items"])  # type: ignore[index]


def unhealthy(item: dict[str, Any]) -> bool:
    st = item.get("status") or {}
    return (
        (st.get("sync") or {}).get("status") != "Synced"
        or (st.get("health") or {}).get("status") not in ("Healthy", "Progressing")
        or bool(st.get("conditions"))
    )


Row = tuple[str, str, str, str, str, str, str, bool]  # cluster … message, unhealthy


def status_rows(cluster: str, items: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for item in sorted(items, key=lambda a: (a["metadata"]["namespace"], a["metadata"]["name"])):
        st = item.get("status") or {}
        sync, hl = st.get("sync") or {}, st.get("health") or {}
        op = st.get("operationState") or {}
        message = next((c.get("message", "") for c in st.get("conditions") or []), "") or op.get(
            "message", ""
        )
        rows.append(
            (
                cluster,
                f"{item['metadata']['namespace']}/{item['metadata']['name']}",
                sync.get("status", "?"),
                (sync.get("revision") or "")[:8],
                hl.get("status", "?"),
                op.get("phase", ""),
                message,
                unhealthy(item),
            )
        )
    return rows


def render_status(rows: list[Row], width: int) -> RenderableType:
    """The Applications as a table that fits `width` columns, namespace/name always whole.
    Narrow (80 columns): revision and last sync go, and each message is printed whole under
    the table, wrapped (what explains an error is often at its end)."""
    wide = width >= 120
    table = Table(
        Column("cluster", no_wrap=True),
        Column("application", no_wrap=True),
        Column("sync", no_wrap=True),
        *([Column("revision", no_wrap=True)] if wide else []),
        Column("health", no_wrap=True),
        *([Column("last sync", no_wrap=True), Column("message", overflow="fold")] if wide else []),
    )
    notes: list[Text] = []
    for cluster, name, sync, revision, health, phase, message, bad in rows:
        cells = [cluster, name, f"[{'red' if bad else 'green'}]{sync}[/]"]
        cells += [revision, health, phase, message] if wide else [health]
        table.add_row(*cells)
        if message and bad and not wide:  # why an app is not fine; a fine one says nothing
            note = Text(f"{cluster} {name}: ", style="bold")
            note.append(message, style="red" if bad else "")
            notes.append(note)
    return Group(table, *notes)


MANY = 30  # more Applications than this: only those not Synced and Healthy, unless --all


def summary(rows: list[Row]) -> str:
    """Counts first: how many Applications, by sync and by health state."""
    syncs = Counter(r[2] for r in rows)
    healths = Counter(r[4] for r in rows)

    def counts(found: Counter[str]) -> str:
        return ", ".join(f"{count} {state}" for state, count in found.most_common())

    return f"{len(rows)} Applications: {counts(syncs)}; {counts(healths)}"


def status_view(
    rows: list[Row],
    width: int,
    sync: str | None = None,
    health: str | None = None,
    show_all: bool = False,
) -> tuple[RenderableType, bool]:
    """The summary, then the Applications the filters keep (by default, with many, only the
    ones that are not Synced and Healthy); and whether any is unhealthy."""
    bad = any(r[-1] for r in rows)
    shown = [
        r
        for r in rows
        if (sync is None or r[2].lower() == sync.lower())
        and (health is None or r[4].lower() == health.lower())
    ]
    note = ""
    if sync is None and health is None and not show_all and len(rows) > MANY:
        shown = [r for r in rows if r[2] != "Synced" or r[4] != "Healthy"]
        note = f"only the {len(shown)} not Synced and Healthy (--all shows every one)"
    parts: list[RenderableType] = [Text(summary(rows), style="bold")]
    if note:
        parts.append(Text(note))
    if shown:
        parts.append(render_status(shown, width))
    return Group(*parts), bad


def status_table(
    kubeconfig: Path | None = None,
    sync: str | None = None,
    health: str | None = None,
    show_all: bool = False,
) -> tuple[RenderableType, bool]:
    rows: list[Row] = []
    for name, path in clusters(kubeconfig).items():
        with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
            rows += status_rows(name, _apps(api))
    return status_view(rows, console.width, sync, health, show_all)


@app.command()
def status(
    kubeconfig: Path | None = KubeconfigOpt,
    sync: str | None = typer.Option(None, help="Only these: Synced, OutOfSync, Unknown"),
    health: str | None = typer.Option(
        None, help="Only these: Healthy, Progressing, Degraded, Suspended, Missing, Unknown"
    ),
    show_all: bool = typer.Option(False, "--all", help="Every Application, however many"),
) -> None:
    """Sync and health of every Application of the cluster(s): counts first, then the
    Applications (with many, only those not Synced and Healthy). Exit 1 if any is not."""
    view, bad = status_table(kubeconfig, sync, health, show_all)
    console.print(view)
    raise typer.Exit(1 if bad else 0)


@app.command()
def sync(
    name: str,
    namespace: str = NamespaceOpt,
    prune: bool = typer.Option(False, help="Also delete what git no longer has"),
    kubeconfig: Path | None = KubeconfigOpt,
    timeout: float = typer.Option(120, help="Seconds to wait for the result"),
) -> None:
    """Sync an Application now (also one without automated sync) and wait for the result."""
    for cluster, path in clusters(kubeconfig).items():
        with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
            custom = client.CustomObjectsApi(api)
            requested = stamp()
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "applications",
                name,
                {
                    "operation": {
                        "sync": {"prune": prune},
                        "initiatedBy": {"username": "herd-cli"},
                    },
                    "metadata": {"annotations": {REFRESH_ANNOTATION: requested}},
                },
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                obj: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
                    GROUP, VERSION, namespace, "applications", name
                )
                op = (obj.get("status") or {}).get("operationState") or {}
                started = parse_time(op.get("startedAt"))
                if not obj.get("operation") and started and started >= parse_time(requested):  # type: ignore[operator]
                    ok = op.get("phase") == "Succeeded"
                    console.print(
                        f"{'[green]✓' if ok else '[red]✗'}[/] {cluster}: {name} "
                        f"{op.get('phase')}: {op.get('message')}"
                    )
                    if not ok:
                        raise typer.Exit(1)
                    break
                time.sleep(0.5)
            else:
                console.print(f"[red]✗[/] {cluster}: no result after {timeout:.0f}s")
                raise typer.Exit(1)


def _rewrites() -> dict[str, str]:
    """Git's insteadOf pairs the operator uses (`make up` points the GitHub URL of clusters/
    at a local bare repository): the CLI reaches the repository as the operator does."""
    s = get_settings()
    return dict(s.git_url_rewrites or json.loads(local_env().get("HERD_GIT_URL_REWRITES", "{}")))


def _engine(api: client.ApiClient) -> Engine:
    s = get_settings()
    cache = RepoCache(
        root=(s.state_dir / "cli-git").absolute(),
        rewrites=_rewrites(),
        known_hosts=s.ssh_known_hosts,
        max_bytes=s.git_max_bytes,
    )
    # As the operator would: the Project's checks, its ServiceAccount impersonated (the
    # caller needs `impersonate` on it, as cluster admins have).
    return Engine(
        api,
        cache,
        binary("helm", s),
        local_sources=s.local_sources,
        control_namespace=s.operator_namespace,
    )


@app.command()
def diff(name: str, namespace: str = NamespaceOpt, kubeconfig: Path | None = KubeconfigOpt) -> None:
    """What a sync of the Application would change in the cluster (exit 1 when anything)."""
    changed = False
    for cluster, path in clusters(kubeconfig).items():
        with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
            obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, namespace, "applications", name
            )
            target = Application(
                name,
                namespace,
                obj["spec"],
                list((obj.get("status") or {}).get("resources") or []),
            )
            try:
                comparison = _engine(api).compare(target)
            except ComparisonError as err:
                console.print(f"[red]✗[/] {cluster}: {err}")
                raise typer.Exit(2) from err
            lines = comparison.diff()
            console.print(
                f"[bold]{cluster}[/] {name} at {comparison.revision[:8]}: "
                f"{'in sync' if not lines else f'{len(lines)} object(s) differ'}"
            )
            for what, paths in lines:
                console.print(f"  [yellow]~[/] {what}: {', '.join(paths[:8])}")
            changed |= bool(lines)
    raise typer.Exit(1 if changed else 0)


ClusterOpt = typer.Option(None, "--cluster", help="dev or prod, where both have the app")


def _applications(
    name: str, namespace: str, kubeconfig: Path | None, cluster: str | None
) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """Each cluster (`cluster` alone, if given) that has the Application: its name,
    kubeconfig and the object."""
    for cl, path in clusters(kubeconfig).items():
        if cluster and cl != cluster:
            continue
        with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
            try:
                obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[assignment]
                    GROUP, VERSION, namespace, "applications", name
                )
            except ApiException as err:
                if err.status == 404:
                    continue
                raise
        yield cl, path, obj


def _application(
    name: str, namespace: str, kubeconfig: Path | None, cluster: str | None
) -> tuple[str, Path, dict[str, Any]]:
    """The one cluster that has the Application (its name, kubeconfig, object)."""
    found = list(_applications(name, namespace, kubeconfig, cluster))
    if not found:
        console.print(f"[red]✗[/] no Application {namespace}/{name}")
        raise typer.Exit(2)
    if len(found) > 1:
        names = ", ".join(f[0] for f in found)
        console.print(f"[red]✗[/] {namespace}/{name} is in {names}: pass --cluster")
        raise typer.Exit(2)
    return found[0]


def history_rows(obj: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """Newest first: id, revision, deployed at, result, health after, what it is now."""
    st = obj.get("status") or {}
    current = (st.get("sync") or {}).get("revision")
    rows = []
    for entry in reversed(st.get("history") or []):
        revision = str(entry.get("revision") or "")
        notes = []
        if revision == current:
            notes.append("current")
        if revision == st.get("pinnedRevision"):
            notes.append("pinned (rolled back to)")
        if revision == st.get("pinnedFrom"):
            notes.append("rolled back from")
        since = entry.get("healthSince")
        rows.append(
            (
                str(entry.get("id", "")),
                revision[:8],
                str(entry.get("deployedAt") or ""),
                str(entry.get("result") or "Succeeded"),  # Argo's entries: successes only
                str(entry.get("healthAfter") or "?") + (f" since {since}" if since else ""),
                ", ".join(notes),
            )
        )
    return rows


@app.command()
def history(
    name: str,
    namespace: str = NamespaceOpt,
    kubeconfig: Path | None = KubeconfigOpt,
    cluster: str | None = ClusterOpt,
) -> None:
    """The revisions the Application synced, newest first: when, the sync's result and the
    health it left."""
    shown = False
    for cl, _path, obj in _applications(name, namespace, kubeconfig, cluster):
        shown = True
        source = obj["spec"]["source"]
        console.print(
            f"[bold]{cl}[/] {namespace}/{name}: {source.get('targetRevision') or 'HEAD'} "
            f"of {source['repoURL']}, path {source.get('path')}",
            highlight=False,
        )
        st = obj.get("status") or {}
        if st.get("pinnedRevision"):
            console.print(
                f"  [yellow]pinned at {st['pinnedRevision'][:8]}[/] (auto-rollback from "
                f"{str(st.get('pinnedFrom'))[:8]}) until a new commit lands",
                highlight=False,
            )
        table = Table(
            Column("id", no_wrap=True),
            Column("revision", no_wrap=True),
            Column("deployed at", no_wrap=True),
            Column("result", no_wrap=True),
            Column("health after"),
            Column(""),
        )
        for row in history_rows(obj):
            table.add_row(*row)
        console.print(table)
    if not shown:
        console.print(f"[red]✗[/] no Application {namespace}/{name}")
        raise typer.Exit(2)


def revert_to(work: Path, good: str, paths: tuple[str, ...]) -> bool:
    """Stage, on top of the checked-out head, each of `paths` as it is at `good` (files added
    since are removed): a commit of it reverts them, merges and all, rewriting nothing.
    Whether anything differs."""
    for rel in paths:
        try:
            git("restore", f"--source={good}", "--staged", "--worktree", "--", rel, cwd=work)
        except GitError as err:
            if "did not match" not in str(err):
                raise  # only a path at neither commit (an optional value file) is skipped
    try:
        git("diff", "--cached", "--quiet", cwd=work)
    except GitError:
        return True
    return False


def _wait_synced(
    path: Path, namespace: str, name: str, commit: str, timeout: float
) -> dict[str, Any] | None:
    """The Application once it is Synced at `commit` (by a sync, or already: the revert may
    give what the cluster runs, as under an auto-rollback's pin), or its sync of `commit`
    failed; None at the timeout. A refresh is asked for, as the push webhook would."""
    with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
        custom = client.CustomObjectsApi(api)
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "applications",
            name,
            {"metadata": {"annotations": {REFRESH_ANNOTATION: stamp()}}},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, namespace, "applications", name
            )
            st = obj.get("status") or {}
            op, sync = st.get("operationState") or {}, st.get("sync") or {}
            ran = (op.get("syncResult") or {}).get("revision") == commit
            if (
                sync.get("revision") == commit
                and sync.get("status") == "Synced"
                and op.get("phase") != "Running"
            ) or (ran and op.get("phase") in ("Failed", "Error")):
                return obj
            time.sleep(0.5)
    return None


@app.command()
def rollback(
    name: str,
    revision: str | None = typer.Argument(
        None, help="Commit to go back to; default: the last one whose sync left it Healthy"
    ),
    namespace: str = NamespaceOpt,
    kubeconfig: Path | None = KubeconfigOpt,
    cluster: str | None = ClusterOpt,
    protected: bool = typer.Option(
        False,
        "--protected",
        help="The branch takes changes only by review (also HERD_PROTECTED_BRANCHES)",
    ),
    timeout: float = typer.Option(180, help="Seconds to wait for the sync of the revert"),
) -> None:
    """Roll an Application back through git: a commit on the branch it tracks whose files
    (its path and value files) are those of REVISION, pushed; then wait for its sync.
    Automated sync stays on: git itself moved back. Where the branch is protected, the
    commit goes to a branch of its own for review and nothing changes in the cluster."""
    cl, path, obj = _application(name, namespace, kubeconfig, cluster)
    source = obj["spec"]["source"]
    url, tracked = source["repoURL"], source.get("targetRevision") or "HEAD"
    reads = Source.from_spec(obj["spec"], name).reads()
    st = obj.get("status") or {}
    keep = Path(tempfile.mkdtemp(prefix=f"herd-rollback-{name}-"))
    try:
        commit = _revert(name, url, tracked, reads, st, revision, keep, protected)
    finally:
        if (keep / "keep").exists():
            console.print(f"(the clone stays in {keep / 'work'})", highlight=False)
        else:
            shutil.rmtree(keep, ignore_errors=True)
    if commit is None:
        return
    result = _wait_synced(path, namespace, name, commit, timeout)
    if result is None:
        console.print(f"[red]✗[/] {cl}: {name} has not synced {commit[:8]} after {timeout:.0f}s")
        raise typer.Exit(1)
    rst = result.get("status") or {}
    op, hl = rst.get("operationState") or {}, rst.get("health") or {}
    ran = (op.get("syncResult") or {}).get("revision") == commit
    ok = rst["sync"].get("status") == "Synced" and (not ran or op.get("phase") == "Succeeded")
    outcome = f"{op.get('phase')}: {op.get('message')}" if ran else "nothing to apply"
    console.print(
        f"{'[green]✓' if ok else '[red]✗'}[/] {cl}: {name} {rst['sync'].get('status')} at "
        f"{commit[:8]}, {outcome}; health {hl.get('status')}",
        highlight=False,
    )
    if not ok:
        raise typer.Exit(1)


def _revert(
    name: str,
    url: str,
    tracked: str,
    reads: tuple[str, ...],
    st: dict[str, Any],
    revision: str | None,
    keep: Path,
    protected: bool,
) -> str | None:
    """The revert commit, pushed to the branch: its sha; None when there was nothing to
    revert or the branch took no push (then the change is offered for review)."""
    rewrites = [f"url.{new}.insteadOf={old}" for new, old in _rewrites().items()]
    config_args = [arg for pair in rewrites for arg in ("-c", pair)]
    work = keep / "work"
    branch_args = [] if tracked == "HEAD" else ["--branch", tracked]
    try:
        git(*config_args, "clone", "--quiet", *branch_args, url, str(work), cwd=keep)
        for pair in rewrites:  # the push goes where the clone came from
            key, _, value = pair.partition("=")
            git("config", "--add", key, value, cwd=work)
        branch = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=work)
    except GitError as err:
        console.print(f"[red]✗[/] {url} {tracked}: {err} (a branch is needed to roll back)")
        raise typer.Exit(2) from err
    head = git("rev-parse", "HEAD", cwd=work)
    if revision is None:
        entry = last_healthy(list(st.get("history") or []), other_than=head)
        if entry is None:
            console.print(f"[red]✗[/] {name}: no revision in its history left it Healthy")
            raise typer.Exit(2)
        revision = str(entry["revision"])
    try:
        if revision.startswith("-"):  # an option to git, not a revision
            raise GitError(f"{revision} is no revision")
        good = git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=work)
        git("merge-base", "--is-ancestor", good, head, cwd=work)
    except GitError as err:
        console.print(f"[red]✗[/] {revision} is not a commit of {branch}")
        raise typer.Exit(2) from err
    if not revert_to(work, good, reads):
        console.print(f"{branch} at {head[:8]} already has {good[:8]}'s files: nothing to revert")
        return None
    git(
        "commit",
        "--quiet",
        "-m",
        f"Roll back {name} to {good[:8]}",
        "-m",
        f"Reverts {', '.join(reads)} to {good} (herd app rollback; {branch} was at {head}).",
        cwd=work,
    )
    commit = git("rev-parse", "HEAD", cwd=work)
    refused = ""
    if protected or branch in get_settings().protected_branches:
        refused = f"{branch} is protected"
    else:
        try:
            git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        except GitError as err:
            refused = f"the push to {branch} was refused: {_refusal(err.stderr)}"
    if refused:
        if not _for_review(name, branch, commit, good, work, refused):
            (keep / "keep").touch()  # the only copy of the commit
        return None
    console.print(
        f"[green]✓[/] pushed {commit[:8]} to {branch}: {name}'s files as at {good[:8]}",
        highlight=False,
    )
    return commit


def _refusal(stderr: str) -> str:
    """What the server said (a hook's `remote:` lines), else git's last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")]
    return "; ".join(s for s in said if s)[:500] or (lines[-1] if lines else "refused")


def _for_review(name: str, branch: str, commit: str, good: str, work: Path, why: str) -> bool:
    """The revert as a change to review: on a branch of its own if it may be pushed, else
    in the local clone; the cluster is not touched."""
    review = f"herd/rollback-{name}-{commit[:8]}"
    console.print(f"[yellow]not pushed to {branch}[/]: {why}", highlight=False)
    try:
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{review}", cwd=work)
        where, pushed = f"pushed to branch {review}", True
    except GitError:
        git("branch", review, cwd=work)
        where, pushed = f"left in {work} as branch {review} (push it where it may go)", False
    console.print(f"revert commit {commit} ({name} back to {good[:8]}) {where}", highlight=False)
    console.print("open it for review with:")
    typer.echo(
        f"  gh pr create --base {branch} --head {review} "
        f'--title "Roll back {name} to {good[:8]}" '
        f'--body "herd app rollback: {name}\'s files as at {good}"'
    )
    console.print("nothing changed in the cluster.")
    return pushed


def promote(
    repo: str = typer.Option(None, help="Repository (path or URL); default: make up's origin"),
    source: str = typer.Option("dev", help="Branch to promote"),
    target: str = typer.Option("main", help="Branch prod tracks"),
    env: str = typer.Option("prod", help="Environment whose change to show"),
    dev_kubeconfig: Path | None = typer.Option(
        None, help="The cluster that tracks the branch to promote; default: make up's dev"
    ),
    force: bool = typer.Option(False, help="Promote although dev is not Synced and Healthy"),
    check: bool = typer.Option(False, help="Only check that dev may be promoted"),
) -> None:
    """Merge dev into main (the promotion), push, and show what prod will change and what
    that does to its monthly cost. Refused (exit 1), unless --force, while any Application
    of dev is not Synced and Healthy at the head of the branch it promotes."""
    from herd_devkit.cost import report  # not at the top: the operator never loads it

    url = repo or local_env().get("HERD_ORIGIN_REPO")
    if not url:
        raise typer.BadParameter("pass --repo (make up writes HERD_ORIGIN_REPO to .herd/env)")
    if not force:
        kubeconfig = dev_kubeconfig or local_env().get("KUBECONFIG_DEV")
        if not kubeconfig:
            console.print("[red]cannot tell whether dev is healthy:[/] pass --dev-kubeconfig")
            raise typer.Exit(1)
        head = git("ls-remote", url, f"refs/heads/{source}", cwd=Path.cwd()).split()[0]
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:  # type: ignore[no-untyped-call]
            blockers = promotion_blockers(_apps(api), source, head)
        if blockers:
            console.print(f"[red]not promoting {source} ({head[:8]}): dev is not there yet[/]")
            for line in blockers:
                console.print(f"  {line}", highlight=False)
            console.print("(--force promotes anyway)")
            raise typer.Exit(1)
        console.print(f"dev is Synced and Healthy at {source} {head[:8]}")
    if check:
        return
    helm = binary("helm")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        git("clone", "--quiet", "--branch", target, url, str(work), cwd=Path(tmp))
        before = git("rev-parse", "HEAD", cwd=work)
        git("merge", "--no-ff", "-m", f"Promote {source} to {target}", f"origin/{source}", cwd=work)
        after = git("rev-parse", "HEAD", cwd=work)
        if after == before:
            console.print(f"{target} already has everything in {source}")
            return
        old = _tree(work, before, Path(tmp) / "old")
        new = _tree(work, after, Path(tmp) / "new")
        changes = _render_diff(old, new, env, helm)
        cost = report.change(old, new, env, helm)
        git("push", "--quiet", "origin", f"{target}:{target}", cwd=work)
    console.print(f"[green]✓[/] merged {source} into {target}: {before[:8]} → {after[:8]}")
    if not changes:
        console.print(f"{env} will not change.")
    for line in changes:
        console.print(f"  {line}")
    # Plain text, never wrapped: the promote workflow posts these very lines on the PR.
    typer.echo(cost[0])
    for line in cost[1:]:
        typer.echo(f"  {line}")


def promotion_blockers(apps: list[dict[str, Any]], source: str, head: str) -> list[str]:
    """Why dev may not be promoted: each Application that is not Synced and Healthy, and
    each that tracks `source` but is not at its head (`head`) yet, with why."""
    out = []
    for item in sorted(apps, key=lambda a: (a["metadata"]["namespace"], a["metadata"]["name"])):
        name = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        st = item.get("status") or {}
        sync, health = st.get("sync") or {}, st.get("health") or {}
        tracks = ((item.get("spec") or {}).get("source") or {}).get("targetRevision")
        why = next((c.get("message") for c in st.get("conditions") or []), None)
        if sync.get("status") != "Synced":
            out.append(f"{name}: {sync.get('status') or 'not compared yet'}" + _why(why))
        elif health.get("status") != "Healthy":
            out.append(
                f"{name}: {health.get('status') or 'no health yet'}" + _why(health.get("message"))
            )
        elif tracks == source and sync.get("revision") != head:
            out.append(f"{name}: at {str(sync.get('revision'))[:8]}, {source} is at {head[:8]}")
    return out


def _why(message: str | None) -> str:
    return f" ({message})" if message else ""


def _tree(work: Path, sha: str, dest: Path) -> Path:
    dest.mkdir()
    git(f"--work-tree={dest}", "checkout", sha, "--", ".", cwd=work)
    git("reset", "--quiet", cwd=work)
    return dest


def _render_diff(old: Path, new: Path, env: str, helm: Path) -> list[str]:
    def objects(tree: Path) -> dict[tuple[str, Key], dict[str, Any]]:
        out = {}
        for rendered in environment_apps(tree, env, helm):
            for obj in rendered.objects:
                out[(rendered.name, Key.of(obj))] = obj
        return out

    before, after = objects(old), objects(new)
    lines = []
    for app_key in sorted(set(before) | set(after), key=lambda k: (k[0], str(k[1]))):
        appname, key = app_key
        if app_key not in before:
            lines.append(f"[green]+[/] {appname}: {key}")
        elif app_key not in after:
            lines.append(f"[red]-[/] {appname}: {key}")
        elif paths := changed_paths(comparable(before[app_key]), comparable(after[app_key])):
            # What changes in the spec first; the version labels that follow it last.
            paths.sort(key=lambda p: ".labels." in p or p.startswith("metadata."))
            more = f" (+{len(paths) - 6} more)" if len(paths) > 6 else ""
            lines.append(f"[yellow]~[/] {appname}: {key}: {', '.join(paths[:6])}{more}")
    return lines
