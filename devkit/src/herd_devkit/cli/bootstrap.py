"""`herd bootstrap --env dev|prod` (make bootstrap): hand a cluster over to git.

Installs Herd's CRDs (how they get upgraded: helm never touches crds/ after the first
install), the operator chart with the environment's values, and the environment's root
Application. From then on the root Application syncs everything from git, the operator
included.
"""

from __future__ import annotations

from pathlib import Path

import typer
from kubernetes import config
from rich.console import Console

from herd_devkit.local.gitops import bootstrap_cluster, install_operator_chart
from herd_devkit.settings import get_settings

console = Console()


def bootstrap(
    env: str = typer.Option(..., "--env", help="dev or prod"),
    kubeconfig: Path | None = typer.Option(None, help="Default: KUBECONFIG"),
    set_values: list[str] = typer.Option([], "--set", help="Extra helm --set for the operator"),
) -> None:
    """Install the CRDs, the operator chart and ENV's root Application into a cluster."""
    repo = Path.cwd()
    if env not in ("dev", "prod") or not (repo / "clusters" / env / "root.yaml").is_file():
        raise typer.BadParameter(f"no clusters/{env}/root.yaml", param_hint="--env")
    path = kubeconfig or get_settings().kubeconfig
    if path is None:
        raise typer.BadParameter("set KUBECONFIG or pass --kubeconfig")
    with config.new_client_from_config(config_file=str(path)) as api:  # type: ignore[no-untyped-call]
        from herd_devkit.local import crds

        names = crds.install(api, repo / "charts" / "herd-operator" / "crds")
        console.print(f"[green]✓[/] CRDs: {', '.join(names)}")
        try:
            install_operator_chart(path, repo, env, set_values)
        except RuntimeError as err:
            console.print(f"[red]✗[/] {err}")
            raise typer.Exit(1) from err
        console.print("[green]✓[/] operator chart installed (release herd-operator in herd-system)")
        bootstrap_cluster(api, repo, env)
    console.print(
        f"[green]✓[/] root Application of {env} applied: git drives the cluster now "
        "(`herd app status`)"
    )
