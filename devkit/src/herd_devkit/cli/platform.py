"""`herd up` / `herd down` / `herd status` / `herd mail` (what `make up` and friends run)
and `herd aws bootstrap`."""

from __future__ import annotations

import email
import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from herd_core import aws
from herd_devkit.cli.app import status_table
from herd_devkit.cli.context import local_env
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.platform import Platform
from herd_devkit.settings import get_settings
from herd_devkit.validate import ENVIRONMENTS

console = Console()
aws_app = typer.Typer(no_args_is_help=True, help="The AWS side of an environment.")


def _platform() -> Platform:
    return Platform(settings=get_settings(), repo_root=Path.cwd())


def _say(message: str) -> None:
    console.print(f"[green]✓[/] {message}")


def up() -> None:
    """Start the local platform: clusters dev and prod following git, moto, one operator per
    cluster, the signup API and the email worker. Idempotent."""
    platform = _platform()
    env = platform.up(_say)
    admin = platform.local_admin()
    state = get_settings().state_dir
    console.print(f"\nLogs are in {state}/logs. In your shell, first:\n")
    console.print(f"  set -a; . {state}/env; set +a\n")
    console.print(
        "(herd, kubectl, helm and uv on PATH; kubectl contexts herd-dev and herd-prod.) Then:"
    )
    console.print(
        f"  1. sign up at {env['HERD_API_URL']}/  — then `herd mail` shows the verification "
        "email; follow its link, and the welcome email follows"
    )
    console.print(
        f"  2. the admin page {env['HERD_API_URL']}/admin  — sign in as {admin.email} "
        f"with password {admin.password} (a local account only; kept in {state}/admin.json)",
        soft_wrap=True,
        markup=False,
    )
    console.print("  3. kubectl get tenants,applications,pods -A   (--context herd-prod for prod)")
    console.print(
        "  4. commit to dev in the origin, then `herd promote` brings it to prod "
        f"(origin: {env['HERD_ORIGIN_REPO']})"
    )
    console.print("  5. herd status  — and `make down` stops it all.")


def down() -> None:
    """Stop everything `herd up` started."""
    _platform().down(_say)


def status() -> None:
    """All of the local platform: processes, clusters, Applications. Exit 1 if unhealthy."""
    platform = _platform()
    bad = False
    table = Table("part", "state", "where")
    moto = platform.moto()
    for name, running, where in [
        ("moto", moto.running(), str(moto.state_file.parent)),
        *[
            (f"cluster {e}", platform.cluster(e).running(), str(platform.cluster(e).kubeconfig))
            for e in ENVIRONMENTS
        ],
        *[(s.name, s.running(), str(s.log)) for s in platform.services()],
    ]:
        bad |= not running
        table.add_row(name, "[green]running[/]" if running else "[red]down[/]", where)
    console.print(table)
    if not local_env() or bad:
        console.print("[red]the platform is not (fully) up: `make up`[/]")
        raise typer.Exit(1)
    apps, unhealthy = status_table()
    console.print(apps)
    raise typer.Exit(1 if unhealthy else 0)


def mail() -> None:
    """The emails the platform sent (moto's SES), with their rendered subjects and the first
    link of each (a verification email's is the one to follow)."""
    env = local_env()
    if "AWS_ENDPOINT_URL" not in env:
        console.print("[red]no local platform: `make up`[/]")
        raise typer.Exit(1)
    moto = MotoServer(root=get_settings().state_dir.absolute() / "moto")
    # moto's local keys and region from .herd/env: nothing needed from the shell.
    settings = moto.settings(
        get_settings(),
        aws_endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_region=env.get("AWS_REGION", get_settings().aws_region),
    )
    ses: Any = aws.client("ses", settings)
    rows: list[tuple[str, str, str, str, str]] = []
    sent = moto.data()["ses"]
    for message in sent.get("TemplateMessage", []):
        subject = link = ""
        try:
            rendered = ses.test_render_template(
                TemplateName=message["template"], TemplateData=message["template_data"]
            )["RenderedTemplate"]
            subject = next(
                (line[9:] for line in rendered.splitlines() if line.startswith("Subject: ")),
                "",
            )
            link = first_link(rendered)
        except Exception as err:
            subject = f"(not rendered: {err})"
        rows.append(
            (
                ", ".join(message["destinations"]["ToAddresses"]),
                message["template"],
                subject,
                message["id"],
                link,
            )
        )
    for message in sent.get("Message", []):
        rows.append(
            (
                ", ".join(message["destinations"]["ToAddresses"]),
                "-",
                str(message.get("subject", "")),
                message["id"],
                first_link(str(message.get("body", ""))),
            )
        )
    if not console.is_terminal:
        # Piped (into grep, a script): whole values, one email a line; a table would cut
        # an address (or a link) short to fit 80 columns.
        for row in rows:
            print("\t".join(row))
        return
    table = Table("to", "template", "subject", "message id")
    for row in rows:
        table.add_row(*row[:4])
    console.print(table)
    # Links below the table, each on a line of its own: folded into a cell, a link long
    # with its token could not be copied or clicked.
    for to, _, _, message_id, link in rows:
        if link:
            print(f"{message_id} ({to}): {link}")


def first_link(rendered: str) -> str:
    """The first http(s) URL of an email's text part (else of the whole message)."""
    text = rendered
    for part in email.message_from_string(rendered).walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                text = payload.decode(part.get_content_charset() or "utf-8", "replace")
            break
    found = re.search(r"https?://[^\s\"'<>]+", text)
    return found.group(0) if found else ""


@aws_app.command("bootstrap")
def aws_bootstrap(
    env: str = typer.Option(
        None,
        "--env",
        help="dev or prod: adds the billing alarm at clusters/<env>/cost.yaml's threshold",
    ),
) -> None:
    """Create (idempotently) the user pool, SES sender, email queue + DLQ, jobs table and,
    with --env, the billing alarm and an alarm at 80% of each AWS quota with a usage
    metric (the quotas without one are named on stderr)."""
    threshold = None
    if env is not None:
        from herd_devkit.cost import config  # not at the top: the operator never loads it

        if env not in ENVIRONMENTS:
            raise typer.BadParameter(
                f"expected one of {', '.join(ENVIRONMENTS)}", param_hint="--env"
            )
        try:
            threshold = config.load(Path.cwd(), env).billing_alarm.threshold_usd
        except config.ConfigError as err:
            raise typer.BadParameter(str(err), param_hint="--env") from err
    resources = bootstrap.bootstrap(
        get_settings(), billing_threshold=threshold, quota_alarms=env is not None
    )
    console.print_json(json.dumps(resources.as_dict()))  # stdout: JSON only (scripts read it)
    notes = Console(stderr=True)
    for name in resources.quota_alarms:
        notes.print(f"[green]✓[/] alarm {name} at {bootstrap.QUOTA_ALARM_PERCENT:.0f}%")
    for key, instead in resources.quotas_without_usage_metric:
        notes.print(f"[yellow]![/] {key}: no alarm ({instead})")
