"""`herd aws quotas --env ENV`: how much of each AWS resource quota Herd consumes is in use
(herd_core.quotas), read from the account the AWS variables point at (`. .herd/env`: the
local one). Reads only: list calls a page at a time, GetSendQuota, SESv2 GetAccount."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from herd_core import aws, quotas, usage
from herd_devkit.settings import Settings, get_settings
from herd_devkit.validate import ENVIRONMENTS

console = Console()
WARN = 0.8  # used / limit from which a quota is reported (and the command exits 1)


@dataclass
class Row:
    quota: str  # herd_core.quotas key
    name: str
    scope: str
    used: float | None
    limit: float | None
    default: float | None
    maximum: float | None
    adjustable: bool
    note: str = ""

    @property
    def share(self) -> float | None:
        if self.used is None or not self.limit:
            return None
        return self.used / self.limit


def _row(key: str, scope: str, used: float | None, limit: float, note: str = "") -> Row:
    q = quotas.QUOTAS[key]
    return Row(key, q.name, scope, used, limit, q.default, q.maximum, q.adjustable, note)


def headroom(settings: Settings, env: str) -> list[Row]:
    """Every resource quota Herd consumes in `env`'s account and Region, with its use."""
    prefix = settings.aws_name_prefix or f"{env}-"
    overrides = settings.aws_quotas
    region = settings.aws_region
    idp = aws.client("cognito-idp", settings)
    ses = aws.client("ses", settings)
    rows: list[Row] = []
    pools = _pools(idp)
    rows.append(
        _row(
            "cognito.user_pools_per_region",
            region,
            len(pools),
            quotas.limit("cognito.user_pools_per_region", overrides),
        )
    )
    name = f"{prefix}herd-platform"
    pool = next((p["Id"] for p in pools if p["Name"] == name), None)
    key = "cognito.app_clients_per_user_pool"
    if pool is None:
        rows.append(_row(key, name, None, quotas.limit(key, overrides), "no such pool"))
    else:
        used = usage.app_clients(idp, pool)
        rows.append(
            _row(key, f"{name} ({pool})", used, quotas.limit(key, overrides), "one per Tenant")
        )
    rows.append(
        _row(
            "ses.templates_per_region",
            region,
            usage.templates(ses),
            quotas.limit("ses.templates_per_region", overrides),
        )
    )
    rows.append(
        _row(
            "ses.identities_per_region",
            region,
            len(usage.identities(ses)),
            quotas.limit("ses.identities_per_region", overrides),
        )
    )
    send = ses.get_send_quota()
    sandbox = _sandbox(settings)
    rows.append(
        _row(
            "ses.sending_quota",
            f"{region}, last 24 h",
            float(send["SentLast24Hours"]),
            float(send["Max24HourSend"]),
            {True: "in the SES sandbox", False: "production access", None: ""}[sandbox],
        )
    )
    rows.append(
        _row(
            "ses.sending_rate",
            f"{region}, a second",
            None,
            float(send["MaxSendRate"]),
            "sandbox: only to verified identities" if sandbox else "",
        )
    )
    return rows


def _pools(idp: Any) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"MaxResults": 60}
    found: list[dict[str, Any]] = []
    while True:
        page = idp.list_user_pools(**kwargs)
        found += page.get("UserPools", [])
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def _sandbox(settings: Settings) -> bool | None:
    """Whether SES is in the sandbox (SESv2 GetAccount); None when it cannot be read."""
    try:
        account = aws.client("sesv2", settings).get_account()
    except (ClientError, BotoCoreError):
        return None
    return not account.get("ProductionAccessEnabled", False)


def aws_quotas(
    env: str = typer.Option(..., "--env", help="dev or prod: whose user pool to count"),
    output: str = typer.Option("table", "--output", "-o", help="table or json"),
) -> None:
    """Used / limit of every AWS resource quota Herd consumes (herd_core.quotas: AWS's
    defaults, as HERD_AWS_QUOTAS changes them). Exit 1 when one is 80% used or more."""
    if env not in ENVIRONMENTS:
        raise typer.BadParameter(f"expected one of {', '.join(ENVIRONMENTS)}", param_hint="--env")
    rows = headroom(get_settings(), env)
    if output == "json":
        print(json.dumps([asdict(r) | {"share": r.share} for r in rows], indent=2))
    else:
        table = Table("quota", "scope", "used", "limit", "used %", "AWS default / max", "note")
        for r in rows:
            share = r.share
            shown = "" if share is None else f"{share:.0%}"
            if share is not None and share >= WARN:
                shown = f"[red]{shown}[/]"
            most = quotas.figure(r.maximum) if r.adjustable else "fixed"
            table.add_row(
                r.name,
                r.scope,
                quotas.figure(r.used) if r.used is not None else "",
                quotas.figure(r.limit),
                shown,
                f"{quotas.figure(r.default)} / {most}",
                r.note,
            )
        console.print(table)
        console.print(f"figures of herd_core.quotas as of {quotas.AS_OF}", style="dim")
    if any((r.share or 0) >= WARN for r in rows):
        raise typer.Exit(1)
