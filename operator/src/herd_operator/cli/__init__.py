"""The `herd` command line. Sub-commands of other packages plug in via the `herd.cli`
entry-point group (the API package adds `herd api` and `herd worker` that way), so the
operator package never imports the API package."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import typer

from herd_operator.cli import app as app_cli
from herd_operator.cli import bootstrap, cluster, cost, operator, platform, validate

app = typer.Typer(
    no_args_is_help=True,
    help="Herd: GitOps for OpenRemote on EKS.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(cluster.app, name="cluster")
app.add_typer(app_cli.app, name="app")
app.command("promote")(app_cli.promote)
app.add_typer(operator.app, name="operator")
app.add_typer(platform.aws_app, name="aws")
app.command("up")(platform.up)
app.command("down")(platform.down)
app.command("status")(platform.status)
app.command("mail")(platform.mail)
app.command("validate")(validate.validate)
app.command("bootstrap")(bootstrap.bootstrap)
app.command("cost")(cost.cost)

for ep in entry_points(group="herd.cli"):
    app.add_typer(ep.load(), name=ep.name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "pyhelm3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()
