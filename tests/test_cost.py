"""`herd cost`, the cost lines of `herd promote` and the billing alarm of `herd aws bootstrap`,
end to end: the real repository layout rendered with the real helm, a real bare origin, the
CLI as a process, moto for AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd_core import aws
from herd_devkit.cost import config, prices
from herd_devkit.cost.model import X
from herd_devkit.local.bootstrap import BILLING_REGION
from herd_devkit.local.gitops import seed_origin
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings

from .helpers import ROOT

PRICES = prices.load("eu-west-1")
HOURS = Decimal(str(PRICES.hours_per_month))
SCRATCH_PVC = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: scratch
  namespace: openremote
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: gp3
  resources:
    requests:
      storage: 50Gi
"""


def herd(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "herd_core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,}"


def price(value: float) -> Decimal:
    return Decimal(str(value))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_herd_cost_of_each_environment(env: str) -> None:
    result = herd("cost", "--env", env, "--output", "json")
    assert result.returncode == 0, result.stderr
    est = json.loads(result.stdout)
    items = {i["key"]: i for i in est["items"]}
    assert est["region"] == "eu-west-1" and est["pricesAsOf"] == PRICES.as_of.isoformat()

    # Compute by node group, as clusters/<env>/eksctl.yaml has it.
    eksctl = yaml.safe_load((ROOT / "clusters" / env / "eksctl.yaml").read_text())
    (ng,) = eksctl["managedNodeGroups"]
    nodes = items[f"nodes/{ng['name']}"]
    assert (nodes["quantity"], nodes["unit"]) == (ng["desiredCapacity"], ng["instanceType"])
    expected = ng["desiredCapacity"] * HOURS * price(PRICES.ec2[ng["instanceType"]])
    assert Decimal(str(nodes["monthly"])) == expected.quantize(Decimal("0.01"))
    assert items[f"nodes/{ng['name']}/root"]["unit"] == f"{ng['volumeSize']} GiB gp3"

    # EBS by volume: the PVCs the charts render with this environment's values.
    values = yaml.safe_load((ROOT / "clusters" / env / "values" / "openremote.yaml").read_text())
    pg = items["pvc/openremote/data-openremote-postgresql-0"]
    assert f"{int(pg['quantity'])}Gi" == values["postgresql"]["persistence"]["size"]
    assert "pvc/openremote/openremote-manager" in items
    # Load balancers: one ALB per Ingress (no groups), an NLB for MQTT; NAT per vpc.nat.
    assert sorted(k for k in items if k.startswith(("alb/", "nlb/"))) == [
        "alb/herd-system/herd-api",
        "alb/openremote/openremote",
        "nlb/openremote/openremote-mqtt",
    ]
    nat = {"Single": 1, "HighlyAvailable": len(eksctl["availabilityZones"])}
    assert items["nat"]["quantity"] == nat[eksctl["vpc"]["nat"]["gateway"]]
    # Usage-priced services at the stated assumptions.
    usage = config.load(ROOT, env).usage
    assert items["ses"]["quantity"] == usage.emails == 10_000
    assert items["cognito"]["quantity"] == usage.signups == 1_000

    total = Decimal(str(est["total"]))
    assert total == sum(Decimal(str(i["monthly"])) for i in est["items"])
    # The billing alarm must not go off on the bill we expect; the README shows this total.
    assert config.load(ROOT, env).billing_alarm.threshold_usd > total
    readme = (ROOT / "README.md").read_text()
    assert "| **total a month** |" in readme and f"**${total:,.2f}**" in readme

    text = herd("cost", "--env", env)
    assert text.returncode == 0, text.stderr
    assert f"{total:,.2f}" in text.stdout and f"{ng['desiredCapacity']} {X} " in text.stdout


def test_bad_environment_is_refused() -> None:
    result = herd("cost", "--env", "staging")
    assert result.returncode == 2 and "expected one of dev, prod" in result.stderr


def test_promotion_of_a_node_and_a_pvc_shows_exactly_their_price(tmp_path: Path) -> None:
    origin = seed_origin(ROOT, tmp_path / "origin")
    eksctl_path = "clusters/prod/eksctl.yaml"
    eksctl = (ROOT / eksctl_path).read_text()
    assert "    desiredCapacity: 3\n" in eksctl
    before_main = origin.head("main")
    origin.commit(
        "dev",
        "prod: a fourth node, a scratch volume",
        {
            eksctl_path: eksctl.replace("    desiredCapacity: 3\n", "    desiredCapacity: 4\n"),
            "apps/platform/scratch-pvc.yaml": SCRATCH_PVC,
        },
    )
    node = (HOURS * price(PRICES.ec2["m7i.xlarge"])).quantize(Decimal("0.01"))
    root_volume = 80 * price(PRICES.ebs.gp3)
    pvc = 50 * price(PRICES.ebs.gp3)
    lines = [
        f"+{usd(node)}/month: node group general 3 → 4 {X} m7i.xlarge",
        f"+{usd(root_volume)}/month: root volumes of node group general 3 → 4 {X} 80 GiB gp3",
        f"+{usd(pvc)}/month: PVC openremote/scratch 50 GiB gp3 (new)",
    ]

    # What the promote workflow posts on the pull request: the change since main.
    since = herd("cost", "--env", "prod", "--since", "origin/main", cwd=origin.work)
    assert since.returncode == 0, since.stderr
    posted = since.stdout.splitlines()
    assert posted[1:] == lines
    old = Decimal(posted[0].split(": $")[1].split(" ")[0].replace(",", ""))
    assert posted[0].startswith(
        f"Monthly cost of prod: {usd(old)} → {usd(old + node + root_volume + pvc)} "
        f"(+{usd(node + root_volume + pvc)}/month"
    )

    # No dev cluster here to gate the promotion on (test_gitops_e2e tests the gate).
    promoted = herd("promote", "--repo", origin.url, "--force")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    out = promoted.stdout.splitlines()
    assert origin.head("main") != before_main
    assert "platform: PersistentVolumeClaim" in promoted.stdout  # the object diff, as before
    start = out.index(posted[0])
    assert [line.strip() for line in out[start + 1 : start + 4]] == lines


def test_aws_bootstrap_creates_the_billing_alarm(moto: MotoServer, aws_settings: Settings) -> None:
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "HERD_AWS_MAX_ATTEMPTS": "1",
    }
    cloudwatch = aws.client("cloudwatch", aws_settings, region=BILLING_REGION)
    sns = aws.client("sns", aws_settings, region=BILLING_REGION)
    for name in ("dev", "prod"):
        prefix = f"alarm-{name}-"
        for _ in range(2):  # idempotent: the second run changes nothing
            result = herd(
                "aws", "bootstrap", "--env", name, env={**env, "HERD_AWS_NAME_PREFIX": prefix}
            )
            assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["billing_alarm"] == f"{prefix}herd-billing"
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        assert len(alarms) == 1
        (alarm,) = alarms
        assert alarm["AlarmName"] == f"{prefix}herd-billing"
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Billing", "EstimatedCharges")
        assert alarm["Dimensions"] == [{"Name": "Currency", "Value": "USD"}]
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Threshold"] == config.load(ROOT, name).billing_alarm.threshold_usd
        topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
        assert alarm["AlarmActions"] == [t for t in topics if t.endswith(f":{prefix}herd-billing")]
    assert config.load(ROOT, "dev").billing_alarm.threshold_usd != (
        config.load(ROOT, "prod").billing_alarm.threshold_usd
    )

    # Without --env (make up, kind): no alarm. A wrong environment is refused.
    plain = herd("aws", "bootstrap", env={**env, "HERD_AWS_NAME_PREFIX": "alarm-none-"})
    assert plain.returncode == 0 and json.loads(plain.stdout)["billing_alarm"] == ""
    assert not cloudwatch.describe_alarms(AlarmNamePrefix="alarm-none-")["MetricAlarms"]
    bad = herd("aws", "bootstrap", "--env", "qa", env=env)
    assert bad.returncode == 2 and "expected one of dev, prod" in bad.stderr
