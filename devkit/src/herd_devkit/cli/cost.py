"""`herd cost`: what an environment costs a month, from git alone (pinned prices, no network).

The cost package is imported inside the command only: `herd operator run` loads this module
(the CLI registers every command) but never the cost code."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from herd_core import git
from herd_devkit.local.gitops import GITOPS_FOLDERS
from herd_devkit.local.tools import binary
from herd_devkit.validate import ENVIRONMENTS

console = Console()


def checkout(repo: Path, revision: str, dest: Path) -> Path:
    """The GitOps folders of `revision` into `dest`, leaving the repository's index alone."""
    try:
        tar = git.output("archive", "--format=tar", revision, "--", *GITOPS_FOLDERS, cwd=repo)
    except git.GitError as err:
        raise typer.BadParameter(
            f"git archive {revision}: {err.stderr}", param_hint="--since"
        ) from err
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")
    return dest


def cost(
    env: str = typer.Option("dev", "--env", help="dev or prod"),
    output: str = typer.Option("text", "--output", "-o", help="text or json"),
    since: str = typer.Option(
        None, "--since", help="A git revision: print the change from it to the working tree"
    ),
) -> None:
    """Monthly estimate of an environment: each line item (compute by node group, EBS by
    volume, load balancers, NAT, usage-priced services at clusters/<env>/cost.yaml's
    assumptions) and the total, from the apps rendered exactly as the sync engine does."""
    from herd_devkit.cost import report
    from herd_devkit.cost.model import number

    if env not in ENVIRONMENTS:
        raise typer.BadParameter(f"expected one of {', '.join(ENVIRONMENTS)}", param_hint="--env")
    if output not in ("text", "json"):
        raise typer.BadParameter("expected text or json", param_hint="--output")
    repo, helm = Path.cwd(), binary("helm")
    if since is not None:
        with tempfile.TemporaryDirectory() as tmp:
            lines = report.change(checkout(repo, since, Path(tmp)), repo, env, helm)
        if output == "json":
            typer.echo(json.dumps({"env": env, "since": since, "lines": lines}))
        else:
            typer.echo("\n".join(lines))
        return
    try:
        estimate = report.estimate(repo, env, helm)
    except report.ERRORS as err:
        console.print(f"[red]✗[/] {env}: {err}")
        raise typer.Exit(2) from err
    if output == "json":
        typer.echo(json.dumps(estimate.as_dict(), indent=2))
        return
    table = Table(
        Column("item", overflow="fold"),
        "quantity",
        "$/month",
        "how",
        title=f"{env}: monthly estimate, {estimate.region} prices as of {estimate.prices_as_of}",
    )
    for item in estimate.items:
        table.add_row(item.label, item.amount(), f"{item.monthly:,.2f}", item.basis)
    table.add_section()
    table.add_row("[bold]total[/]", "", f"[bold]{estimate.total:,.2f}[/]", estimate.currency)
    console.print(table)
    usage = ", ".join(f"{k} {number(v)}" for k, v in estimate.usage.items())
    console.print(f"Usage assumed (clusters/{env}/cost.yaml, a month): {usage}")
