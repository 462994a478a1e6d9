"""An AWS resource quota reached, through the real parts: API server, an operator process,
and a local AWS whose app-client quota is lowered to 3 (HERD_AWS_QUOTAS, enforced by
herd_devkit.local.aws_quotas). The 4th CognitoClient of the pool ends Ready=False reason
QuotaExceeded with the figures and how to raise the quota, and the operator leaves it alone
(no CreateUserPoolClient for it, counted at the proxy in front of that AWS) until its spec
changes or, unasked, after the quota's slow retry delay. The operator's gauges show the
pool full.

A moto and an operator of this test's own, watching only its namespace: the session's
operator is stopped meanwhile (it would reconcile the same objects against another AWS), and
this one leaves other namespaces alone."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core import aws
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port
from herd_devkit.settings import get_settings

from .faultproxy import FaultProxy
from .helpers import Custom, OperatorProcess, events, wait_for

KIND, PLURAL = "CognitoClient", "cognitoclients"
QUOTA = {"cognito.app_clients_per_user_pool": 3}
RETRY = 45  # seconds before a quota-stopped object is looked at again (default 15 minutes)


def spec(name: str) -> dict[str, Any]:
    return {
        "clientName": name,
        "secretName": f"{name}-credentials",
        "explicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    }


def gauges(port: str) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("herd_aws_quota_")
    }


def test_the_client_past_the_pools_quota_is_quota_exceeded_and_left_alone(
    live_operator: OperatorProcess,
    api: ApiClient,
    operator_env: dict[str, str],
    objects: Custom,
    make_namespace: Callable[[str], str],
    tmp_path: Path,
) -> None:
    moto = MotoServer(root=tmp_path / "moto", server_env={"HERD_AWS_QUOTAS": json.dumps(QUOTA)})
    moto.start()
    proxy = FaultProxy(moto.url).start()
    settings = moto.settings(get_settings(), aws_region="eu-west-1", aws_max_attempts=1)
    pool = aws.client("cognito-idp", settings).create_user_pool(PoolName="quota")["UserPool"]
    metrics_port = str(free_port())
    own = OperatorProcess(
        args=("operator", "run", "--verbose", "--namespace", objects.namespace),
        env={
            **operator_env,
            "AWS_ENDPOINT_URL": proxy.url,
            "HERD_COGNITO_USER_POOL_ID": pool["Id"],
            "HERD_AWS_QUOTAS": json.dumps(QUOTA),
            # As in production, the SDK's retries on: they must not repeat a full pool's create.
            "HERD_AWS_MAX_ATTEMPTS": "5",
            "HERD_QUOTA_RETRY_DELAY": str(RETRY),
            "HERD_AWS_CALL_LOG": str(tmp_path / "calls.jsonl"),
            "HERD_METRICS_PORT": metrics_port,
            "HERD_DRIFT_INTERVAL": "1",
            "HERD_QUOTA_REFRESH_INTERVAL": "1",
        },
        log=tmp_path / "operator.log",
    )
    # A bystander: another namespace's client, Ready in the session's AWS. An operator run
    # with --namespace must not sweep it (it would "repair" it against this test's AWS).
    bystanders = Custom(api, make_namespace("bystander"))
    bystander = f"by-{uuid.uuid4().hex[:6]}"
    bystanders.create(KIND, PLURAL, bystander, spec(bystander))
    bystanders.wait_condition(PLURAL, bystander)
    client_id = bystanders.get(PLURAL, bystander)["status"]["clientId"]
    touched = [
        proxy.after("DescribeUserPoolClient", lambda: None, times=10**6, contains=client_id),
        proxy.after("CreateUserPoolClient", lambda: None, times=10**6, contains=bystander),
    ]
    live_operator.stop()
    names = [f"q{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    try:
        own.start()
        for name in names[:3]:
            objects.create(KIND, PLURAL, name, spec(name))
        for name in names[:3]:
            objects.wait_condition(PLURAL, name)
        objects.create(KIND, PLURAL, names[3], spec(names[3]))
        ready = objects.wait_condition(
            PLURAL, names[3], status="False", reason="QuotaExceeded", timeout=90
        )
        message = ready["message"]
        assert f"App clients per user pool in user pool {pool['Id']} (3 of 3 used" in message
        assert "AWS default 1,000, at most 10,000" in message
        assert "Service Quotas (https://console.aws.amazon.com/servicequotas/" in message
        synced = objects.condition(PLURAL, names[3], "Synced")
        assert synced["reason"] == "QuotaExceeded"
        assert not objects.get(PLURAL, names[3])["status"].get("clientId")
        found = wait_for(
            lambda: [
                e for e in events(api, objects.namespace, names[3]) if e[1] == "QuotaExceeded"
            ],
            30,
            "a QuotaExceeded Event",
        )
        assert found[0][0] == "Warning" and "3 of 3 used" in found[0][2]
        # Refused once, never retried as a throttle, and left alone: no create for ~30 s.
        creates = proxy.count("CreateUserPoolClient")
        assert creates == 4
        time.sleep(30)
        assert proxy.count("CreateUserPoolClient") == creates
        assert [rule.hits for rule in touched] == [0, 0]
        assert objects.condition(PLURAL, names[3], "Ready")["reason"] == "QuotaExceeded"

        # The headroom, as the operator's gauges show it.
        key = f'quota="cognito.app_clients_per_user_pool",scope="{pool["Id"]}"'
        shown = wait_for(lambda: gauges(metrics_port).get(f"herd_aws_quota_used{{{key}}}"), 30)
        assert shown == 3.0
        assert gauges(metrics_port)[f"herd_aws_quota_limit{{{key}}}"] == 3.0

        # A place freed: the slow retry (HERD_QUOTA_RETRY_DELAY) makes it, unasked.
        objects.delete(PLURAL, names[0])
        objects.wait_gone(PLURAL, names[0])
        objects.wait_condition(PLURAL, names[3], timeout=RETRY + 30)
        assert proxy.count("CreateUserPoolClient") == creates + 1

        # Full again: a spec change retries at once, not after the delay.
        objects.create(KIND, PLURAL, names[4], spec(names[4]))
        objects.wait_condition(PLURAL, names[4], status="False", reason="QuotaExceeded")
        objects.delete(PLURAL, names[1])
        objects.wait_gone(PLURAL, names[1])
        changed = time.monotonic()
        objects.patch(PLURAL, names[4], {"logoutURLs": ["https://example.com/bye"]})
        objects.wait_condition(PLURAL, names[4], timeout=RETRY / 2)
        assert time.monotonic() - changed < RETRY / 2
    finally:
        # This test's clients go with the operator that made them, against this test's AWS:
        # left to the suite's operator, their deletion would call a pool its AWS (and its
        # IAM policy, test_zz_iam) never had.
        for name in names:
            with contextlib.suppress(ApiException):
                objects.delete(PLURAL, name)
        for name in names:
            with contextlib.suppress(AssertionError):
                objects.wait_gone(PLURAL, name, timeout=60)
        own.stop()
        live_operator.start()
        proxy.stop()
        moto.stop()
