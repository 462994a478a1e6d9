"""`herd app repo`: your own repositories in the local platform (`make up`), fetched from a
folder on this machine while the Applications keep their production URL."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from herd_devkit.local import repos
from herd_devkit.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Local repositories for `make up`.")
console = Console()


def _state() -> Path:
    return get_settings().state_dir.absolute()


@app.command("add")
def add(
    url: str = typer.Argument(help="The URL your Applications name (https://, ssh://, git@)"),
    path: Path = typer.Argument(help="A git repository on this machine (work tree or bare)"),
) -> None:
    """Fetch URL from PATH in the local platform: Applications keep URL as repoURL."""
    try:
        local = repos.add(_state(), url, path)
    except repos.RepoError as err:
        console.print(f"[red]✗[/] {err}")
        raise typer.Exit(1) from err
    console.print(f"[green]✓[/] {url} -> {local}")
    console.print(
        "Run `make up` to restart the local operators with it. The Project must allow the "
        "URL (sourceRepos), and the branch an Application names must be a branch of PATH."
    )


@app.command("remove")
def remove(url: str = typer.Argument(help="A URL added before")) -> None:
    """Fetch URL from where it is again (after `make up`)."""
    if not repos.remove(_state(), url):
        console.print(f"[red]✗[/] {url} is not a local repository")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {url} removed; run `make up` to restart the operators")


@app.command("list")
def list_() -> None:
    """The URLs fetched from folders on this machine."""
    for url, local in sorted(repos.load(_state()).items()):
        console.print(f"{url}  {local}")
