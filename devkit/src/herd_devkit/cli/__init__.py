"""The developer's `herd` commands: local clusters and platform, GitOps inspection, validate,
bootstrap and cost. Plugged into `herd` (herd_core.cli) through the `herd.cli` entry point."""

from __future__ import annotations

import typer

from herd_devkit.cli import app as app_cli
from herd_devkit.cli import (
    bootstrap,
    cluster,
    cost,
    manifests,
    platform,
    quotas,
    repo,
    validate,
)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster.app, name="cluster")
    app_cli.app.add_typer(repo.app, name="repo")
    app.add_typer(app_cli.app, name="app")
    app.command("promote")(app_cli.promote)
    platform.aws_app.command("quotas")(quotas.aws_quotas)
    app.add_typer(platform.aws_app, name="aws")
    app.command("up")(platform.up)
    app.command("down")(platform.down)
    app.command("status")(platform.status)
    app.command("mail")(platform.mail)
    app.command("validate")(validate.validate)
    app.command("bootstrap")(bootstrap.bootstrap)
    app.command("cost")(cost.cost)
    app.command("manifests")(manifests.manifests)
