"""`herd cluster up|down|list NAME`: embedded control planes under .herd/clusters/."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Embedded Kubernetes control planes.")
console = Console()


@app.command()
def up(name: str = typer.Argument(..., help="Cluster name, e.g. dev or prod")) -> None:
    """Start (or keep) a control plane and write its admin kubeconfig."""
    cp = ControlPlane.named(name, tie_to_parent=False)
    with console.status(
        f"starting cluster [bold]{name}[/] (etcd, kube-apiserver, kube-controller-manager)"
    ):
        cp.start()
    console.print(f"[green]✓[/] cluster [bold]{name}[/] at {cp.server}")
    console.print(f"  kubectl --kubeconfig {cp.kubeconfig} get ns")


@app.command()
def down(name: str = typer.Argument(..., help="Cluster name")) -> None:
    """Stop a control plane; no process is left behind."""
    cp = ControlPlane.named(name)
    cp.stop()
    console.print(f"[green]✓[/] cluster [bold]{name}[/] stopped")


@app.command("list")
def list_() -> None:
    """Clusters known under the state folder and whether they run."""
    root = get_settings().state_dir / "clusters"
    table = Table("cluster", "state", "server", "kubeconfig")
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        cp = ControlPlane.named(folder.name)
        running = cp.running()
        table.add_row(
            folder.name,
            "[green]running[/]" if running else "[dim]stopped[/]",
            cp.server if running else "",
            str(cp.kubeconfig),
        )
    console.print(table)
