"""`herd aws bootstrap --env ENV`'s quota alarms, against the local AWS (moto behind the
devkit's quota front, which passes CloudWatch and SNS through): one alarm at 80% of each
quota of herd_core.quotas that can run out and has a CloudWatch usage metric (metric math
over AWS/Usage and SERVICE_QUOTA(m1)), each notifying the environment's quota topic; every
one without a usage metric named on stderr with what watches it instead; idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from herd_core import aws, quotas
from herd_devkit.local.bootstrap import QUOTA_ALARM_PERCENT, quota_alarm_name
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings

from .helpers import ROOT


def herd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herd_core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def test_bootstrap_alarms_at_80_percent_of_each_quota_with_a_usage_metric(
    moto: MotoServer, aws_settings: Settings
) -> None:
    prefix = f"qa-{uuid.uuid4().hex[:6]}-"
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": aws_settings.aws_region,
        "HERD_AWS_MAX_ATTEMPTS": "1",
        "HERD_AWS_NAME_PREFIX": prefix,
    }
    for _ in range(2):  # idempotent: the second run replaces, never adds
        result = herd("aws", "bootstrap", "--env", "dev", env=env)
        assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # stdout stays JSON for scripts (hack/kind-up.sh)

    watched = [q for q in quotas.can_run_out() if q.usage is not None]
    unwatched = [q for q in quotas.can_run_out() if q.usage is None]
    assert watched and unwatched
    assert out["quota_alarms"] == [quota_alarm_name(prefix, q) for q in watched]
    assert [k for k, _ in out["quotas_without_usage_metric"]] == [q.key for q in unwatched]
    # Every resource count can run out and none has a usage metric: each is named.
    assert {q.key for q in quotas.counts()} <= {q.key for q in unwatched}
    for quota in unwatched:
        assert f"{quota.key}: no alarm (no usage metric" in result.stderr

    cloudwatch = aws.client("cloudwatch", aws_settings)
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{prefix}herd-quota-")["MetricAlarms"]
    }
    assert sorted(alarms) == sorted(out["quota_alarms"])
    topics = [t["TopicArn"] for t in aws.client("sns", aws_settings).list_topics()["Topics"]]
    (topic,) = [t for t in topics if t.endswith(f":{prefix}herd-quotas")]
    for quota in watched:
        alarm = alarms[quota_alarm_name(prefix, quota)]
        assert alarm["Threshold"] == QUOTA_ALARM_PERCENT
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["AlarmActions"] == [topic]
        metrics: dict[str, Any] = {m["Id"]: m for m in alarm["Metrics"]}
        stat = metrics["m1"]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/Usage"
        assert stat["Metric"]["MetricName"] == "CallCount"
        dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        category = quota.key.rsplit(".", 1)[1]
        assert dims == {"Service": "Cognito User Pools", "Type": "API", "Resource": category}
        assert (stat["Stat"], stat["Period"]) == ("Sum", 60)
        assert metrics["e1"]["Expression"] == "(m1/60)/SERVICE_QUOTA(m1)*100"
        assert metrics["e1"]["ReturnData"] is True and metrics["m1"]["ReturnData"] is False

    # Without --env (make up, kind): no quota alarm, as no billing alarm.
    plain = herd("aws", "bootstrap", env={**env, "HERD_AWS_NAME_PREFIX": f"{prefix}none-"})
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["quota_alarms"] == []
    none = cloudwatch.describe_alarms(AlarmNamePrefix=f"{prefix}none-")["MetricAlarms"]
    assert none == []
