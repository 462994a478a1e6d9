"""`herd up` / `herd down` (what `make up` / `make down` run) and `herd aws bootstrap`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from herd_operator.local import bootstrap
from herd_operator.local.platform import Platform
from herd_operator.settings import get_settings

console = Console()
aws_app = typer.Typer(no_args_is_help=True, help="The AWS side of an environment.")


def _platform() -> Platform:
    return Platform(settings=get_settings(), repo_root=Path.cwd())


def _say(message: str) -> None:
    console.print(f"[green]✓[/] {message}")


def up() -> None:
    """Start the local platform: clusters dev and prod, moto, CRDs, one operator each."""
    with console.status("starting the local platform"):
        env = _platform().up(_say)
    console.print(f"\nEnvironment written to {get_settings().state_dir / 'env'}. Try:")
    console.print(f"  kubectl --kubeconfig {env['KUBECONFIG_DEV']} apply -f examples/")
    console.print(f"  kubectl --kubeconfig {env['KUBECONFIG_DEV']} get herd -A")


def down() -> None:
    """Stop everything `herd up` started."""
    _platform().down(_say)


@aws_app.command("bootstrap")
def aws_bootstrap() -> None:
    """Create (idempotently) the user pool, SES sender, email queue + DLQ, jobs table."""
    resources = bootstrap.bootstrap(get_settings())
    console.print_json(json.dumps(resources.as_dict()))
