"""`herd validate` (make validate): render all apps of dev and prod and validate them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from kubernetes import config
from rich.console import Console

from herd_devkit import validate as v
from herd_devkit.local import crds
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.tools import binary
from herd_devkit.settings import get_settings

console = Console()


def validate(
    out: Path = typer.Option(Path(".herd/rendered"), help="Where rendered apps are written"),
    kubeconfig: Path | None = typer.Option(
        None, help="Validate against this cluster instead of a throwaway embedded one"
    ),
) -> None:
    """Render every app of every environment to .herd/rendered/<env>/<app>.yaml and
    validate each object against the API server (server-side dry run)."""
    repo = Path.cwd()
    apps, errors = v.render_all(repo, binary("helm"))
    for path in v.write(apps, out):
        console.print(f"rendered {path}")
    if not errors:
        with tempfile.TemporaryDirectory() as tmp:
            cp = None
            if kubeconfig is None:
                settings = get_settings().model_copy(update={"state_dir": Path(tmp)})
                cp = ControlPlane.named("validate", settings=settings)
                with console.status("starting a throwaway control plane"):
                    cp.start()
                kubeconfig = cp.kubeconfig
            try:
                with config.new_client_from_config(config_file=str(kubeconfig)) as api:  # type: ignore[no-untyped-call]
                    crds.install(api, repo / "charts" / "herd-operator" / "crds")
                    errors = v.dry_run(api, apps)
            finally:
                if cp is not None:
                    cp.stop()
    count = sum(len(a.objects) for a in apps)
    if errors:
        for error in errors:
            console.print(f"[red]✗[/] {error}")
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/] {count} objects in {len(apps)} apps valid for {', '.join(v.ENVIRONMENTS)}"
    )
