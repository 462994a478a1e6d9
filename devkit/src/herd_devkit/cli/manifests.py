"""`herd manifests` (make manifests): write the CRDs from the models in herd_core.models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from herd_devkit import manifests as gen

console = Console()


def manifests(
    out: Path = typer.Option(gen.CRD_DIR, help="Folder of the CRDs (run from the repository)"),
    check: bool = typer.Option(False, help="Write nothing; exit 1 if a CRD differs from its model"),
) -> None:
    """Write charts/herd-operator/crds/ from the custom resource models (herd_core.models)."""
    if check:
        drifted = gen.stale(out)
        for path in drifted:
            console.print(
                f"[red]✗[/] {path} differs from its model: run `make manifests`", soft_wrap=True
            )
        raise typer.Exit(1 if drifted else 0)
    for path in gen.write(out):
        console.print(f"[green]✓[/] wrote {path}")
