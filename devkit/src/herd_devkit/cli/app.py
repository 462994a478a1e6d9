"""`herd app status|sync|diff` and `herd promote`."""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from kubernetes import client, config
from rich.console import Console, Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from herd_core.constants import GROUP, VERSION
from herd_devkit.cli.context import clusters, local_env
from herd_devkit.local.gitrepo import git
from herd_devkit.local.tools import binary
from herd_devkit.settings import get_settings
from herd_devkit.validate import environment_apps
from herd_operator.gitops.engine import Application, ComparisonError, Engine
from herd_operator.gitops.git import RepoCache
from herd_operator.gitops.plan import Key, changed_paths, comparable
from herd_operator.handlers.application import REFRESH_ANNOTATION, parse_time, stamp

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


def _engine(api: client.ApiClient) -> Engine:
    s = get_settings()
    rewrites = s.git_url_rewrites or json.loads(local_env().get("HERD_GIT_URL_REWRITES", "{}"))
    cache = RepoCache(
        root=(s.state_dir / "cli-git").absolute(),
        rewrites=rewrites,
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
