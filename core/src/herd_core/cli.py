"""The `herd` command. Every package plugs its commands in through the `herd.cli` entry-point
group, so an image shows only what it ships: the operator image `herd operator`, the API image
`herd api` and `herd worker`, and a developer's checkout everything (the devkit adds the local
commands). An entry point names either a typer app (added as `herd <name>`) or a function that
adds commands itself (`register(app)`), for top-level commands like `herd up`."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Herd: GitOps for OpenRemote on EKS.",
    pretty_exceptions_show_locals=False,
)


def _plug_in() -> None:
    for ep in sorted(entry_points(group="herd.cli"), key=lambda e: e.name):
        found = ep.load()
        if isinstance(found, typer.Typer):
            app.add_typer(found, name=ep.name)
        else:
            found(app)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "pyhelm3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _plug_in()
    app()
