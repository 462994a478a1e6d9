"""The local AWS holds AWS's quotas and request rates (herd_devkit.local.aws_quotas, figures
from herd_core.quotas) and answers as AWS does when one is reached. Plain boto3 against a
moto of this module's own, its quotas lowered through HERD_AWS_QUOTAS so a limit of 1,000
takes 3 calls; the SES sandbox on a second one (HERD_LOCAL_SES_SANDBOX)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from herd_core import aws, pacing, quotas
from herd_core.errors import QuotaExceeded, Recoverable, classify
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import LOCAL_KEY_ID, LOCAL_SECRET, MotoServer, without_aws
from herd_devkit.settings import Settings, get_settings

from .faultproxy import FaultProxy

REGION = "eu-west-1"
LOWERED = {
    "cognito.app_clients_per_user_pool": 3,
    "cognito.user_pools_per_region": 8,
    "ses.templates_per_region": 2,
    "cognito.rate.UserCreation": 1,
    "ses.sending_rate": 1,
    "ses.sending_quota": 3,
}
SENDER = "noreply@herd-itt.com"


def start(root: Path, **env: str) -> MotoServer:
    return MotoServer(root=root, server_env=env).start()


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start(tmp_path_factory.mktemp("quotas"), HERD_AWS_QUOTAS=json.dumps(LOWERED))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start(tmp_path_factory.mktemp("sandbox"), HERD_LOCAL_SES_SANDBOX="true")
    yield server
    server.stop()


def plain(moto: MotoServer, service: str, region: str = REGION) -> Any:
    """boto3 as anyone would use it: no pacing of ours, no retries."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=moto.url,
        aws_access_key_id=LOCAL_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def refused(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as err:
        call()
    response: dict[str, Any] = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return dict(response["Error"])


def pool(idp: Any) -> str:
    return str(idp.create_user_pool(PoolName=f"q-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"])


def at_once(calls: list[Callable[[], Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Run the calls together: (how many succeeded, the errors of the others)."""

    def one(call: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            call()
        except ClientError as err:
            return dict(err.response["Error"])
        return None

    with ThreadPoolExecutor(len(calls)) as ex:
        results = list(ex.map(one, calls))
    errors = [r for r in results if r is not None]
    return len(results) - len(errors), errors


def test_a_pool_holds_only_its_quota_of_app_clients(lowered: MotoServer) -> None:
    idp = plain(lowered, "cognito-idp")
    full, other = pool(idp), pool(idp)
    made = [
        idp.create_user_pool_client(UserPoolId=full, ClientName=f"c{i}")["UserPoolClient"]
        for i in range(3)
    ]
    error = refused(lambda: idp.create_user_pool_client(UserPoolId=full, ClientName="c3"))
    assert (error["Code"], error["Message"]) == quotas.COGNITO_LIMIT
    assert len(idp.list_user_pool_clients(UserPoolId=full, MaxResults=60)["UserPoolClients"]) == 3
    # Per pool: another pool has room.
    idp.create_user_pool_client(UserPoolId=other, ClientName="c0")
    # One deleted, one may be made.
    idp.delete_user_pool_client(UserPoolId=full, ClientId=made[0]["ClientId"])
    idp.create_user_pool_client(UserPoolId=full, ClientName="c3")


def test_the_region_holds_only_its_quota_of_user_pools(lowered: MotoServer) -> None:
    """In a Region of this test's own (the module's other tests make theirs in eu-west-1)."""
    idp = plain(lowered, "cognito-idp", "us-west-2")
    for _ in range(8):
        pool(idp)
    error = refused(lambda: pool(idp))
    assert (error["Code"], error["Message"]) == quotas.COGNITO_LIMIT
    assert len(idp.list_user_pools(MaxResults=60)["UserPools"]) == 8
    # Another Region is another quota.
    pool(plain(lowered, "cognito-idp", "eu-central-1"))


def test_ses_holds_only_its_quota_of_templates_and_answers_in_xml(lowered: MotoServer) -> None:
    """In a Region of this test's own: the send test makes a template in eu-west-1."""
    ses = plain(lowered, "ses", "us-west-2")
    for i in range(2):
        ses.create_template(Template={"TemplateName": f"t{i}", "SubjectPart": "s", "TextPart": "x"})
        time.sleep(1.1)  # SES takes one CreateTemplate a second
    error = refused(
        lambda: ses.create_template(
            Template={"TemplateName": "t2", "SubjectPart": "s", "TextPart": "x"}
        )
    )
    assert (error["Code"], error["Message"]) == quotas.SES_LIMIT
    assert error["Type"] == "Sender"  # parsed from SES's XML error


def test_cognito_throttles_a_category_over_its_rate(lowered: MotoServer) -> None:
    """UserCreation lowered to 1 a second: of 6 AdminCreateUser at once, 1 or 2 pass (the
    bucket holds one second of it); the rest: TooManyRequestsException "Rate exceeded"."""
    idp = plain(lowered, "cognito-idp")
    user_pool = pool(idp)
    time.sleep(1.1)

    def create(i: int) -> Callable[[], Any]:
        return lambda: idp.admin_create_user(
            UserPoolId=user_pool, Username=f"u{i}-{uuid.uuid4().hex[:6]}", MessageAction="SUPPRESS"
        )

    passed, errors = at_once([create(i) for i in range(6)])
    assert 1 <= passed <= 2, errors
    assert {(e["Code"], e["Message"]) for e in errors} == {quotas.COGNITO_THROTTLED}
    time.sleep(1.1)
    create(9)()  # a second later the category has room again
    # Another category is another bucket: reads are not held by creations.
    for _ in range(5):
        idp.list_user_pool_clients(UserPoolId=user_pool, MaxResults=60)


def test_cognito_counts_client_calls_per_user_pool_too(lowered: MotoServer) -> None:
    """UserPoolClientRead: 15 a second for the account, and each operation 5 a second
    against one pool (Cognito's footnote 3): 12 describes of one pool at once are held to
    about 5, while the other pool's are not held by them."""
    idp = plain(lowered, "cognito-idp")
    busy, calm = pool(idp), pool(idp)
    client = idp.create_user_pool_client(UserPoolId=busy, ClientName="c")["UserPoolClient"]
    time.sleep(1.1)

    def describe() -> Any:
        return idp.describe_user_pool_client(UserPoolId=busy, ClientId=client["ClientId"])

    passed, errors = at_once([describe] * 12)
    assert 5 <= passed <= 7, errors
    assert {e["Code"] for e in errors} == {"TooManyRequestsException"}
    idp.list_user_pool_clients(UserPoolId=calm, MaxResults=60)


def test_ses_takes_each_other_action_once_a_second(lowered: MotoServer) -> None:
    ses = plain(lowered, "ses")
    time.sleep(1.1)
    passed, errors = at_once([lambda: ses.list_templates()] * 4)
    assert passed == 1, errors
    assert {(e["Code"], e["Message"]) for e in errors} == {quotas.SES_THROTTLED}
    ses.get_send_quota()  # another action, its own second


def test_sesv2_get_account_is_held_to_once_a_second(lowered: MotoServer) -> None:
    sesv2 = plain(lowered, "sesv2")
    time.sleep(1.1)
    passed, errors = at_once([lambda: sesv2.get_account()] * 4)
    assert passed == 1, errors
    assert {(e["Code"], e["Message"]) for e in errors} == {quotas.SESV2_THROTTLED}


def test_cloudwatch_puts_three_alarms_a_second(lowered: MotoServer) -> None:
    """PutMetricAlarm: 3 a second (`herd aws bootstrap` puts one per watched quota); of 9 at
    once about 3 pass, the rest answer Throttling "Rate exceeded" as CloudWatch's query API
    names it, and Herd's own client paces the same 9 through without an error."""
    cloudwatch = plain(lowered, "cloudwatch")

    def alarm(name: str, client: Any = cloudwatch) -> Callable[[], Any]:
        return lambda: client.put_metric_alarm(
            AlarmName=name,
            Namespace="Herd/Test",
            MetricName="m",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
        )

    time.sleep(1.1)
    passed, errors = at_once([alarm(f"a{i}") for i in range(9)])
    assert 3 <= passed <= 4, errors
    assert {(e["Code"], e["Message"]) for e in errors} == {quotas.CLOUDWATCH_THROTTLED}
    paced = aws.client("cloudwatch", herd_settings(lowered))
    time.sleep(1.1)
    for i in range(9):
        alarm(f"p{i}", paced)()


def test_ses_sends_within_the_sending_rate_and_the_daily_quota(lowered: MotoServer) -> None:
    """Sending rate lowered to 1 a second, the 24-hour quota to 3 recipients."""
    ses = plain(lowered, "ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    time.sleep(1.1)
    ses.create_template(Template={"TemplateName": "send", "SubjectPart": "s", "TextPart": "x"})

    def send(*to: str) -> Callable[[], Any]:
        return lambda: ses.send_templated_email(
            Source=SENDER, Destination={"ToAddresses": list(to)}, Template="send", TemplateData="{}"
        )

    quota = ses.get_send_quota()
    assert (quota["Max24HourSend"], quota["MaxSendRate"]) == (3.0, 1.0)
    passed, errors = at_once([send(f"a{i}@example.com") for i in range(3)])
    assert passed == 1, errors
    assert {(e["Code"], e["Message"]) for e in errors} == {quotas.SES_RATE}
    time.sleep(1.1)
    send("b@example.com")()
    time.sleep(1.1)
    # Two sent: a send to two more recipients would make four in 24 hours.
    error = refused(send("c@example.com", "d@example.com"))
    assert (error["Code"], error["Message"]) == quotas.SES_DAILY
    time.sleep(1.1)
    assert ses.get_send_quota()["SentLast24Hours"] == 2.0


def test_the_sandbox_sends_only_to_verified_identities(sandbox: MotoServer) -> None:
    ses = plain(sandbox, "ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    time.sleep(1.1)  # one VerifyEmailIdentity a second
    ses.verify_email_identity(EmailAddress="tester@example.com")
    time.sleep(1.1)
    ses.create_template(Template={"TemplateName": "hi", "SubjectPart": "s", "TextPart": "x"})

    def send(*to: str) -> Any:
        return ses.send_templated_email(
            Source=SENDER, Destination={"ToAddresses": list(to)}, Template="hi", TemplateData="{}"
        )

    error = refused(lambda: send("tester@example.com", "stranger@example.com"))
    assert error["Code"] == "MessageRejected"
    assert error["Message"] == (
        "Email address is not verified. The following identities failed the check in "
        "region EU-WEST-1: stranger@example.com"
    )
    send("tester@example.com")
    time.sleep(1.1)
    send("success@simulator.amazonses.com")  # the mailbox simulator is always allowed
    quota = ses.get_send_quota()
    assert (quota["Max24HourSend"], quota["MaxSendRate"], quota["SentLast24Hours"]) == (
        200.0,
        1.0,
        2.0,
    )
    account = plain(sandbox, "sesv2").get_account()
    assert account["ProductionAccessEnabled"] is False
    assert account["SendQuota"]["Max24HourSend"] == 200.0


def test_out_of_the_sandbox_anyone_may_be_sent_to(lowered: MotoServer) -> None:
    """`make up`'s default: welcome emails reach any signup's address."""
    account = plain(lowered, "sesv2").get_account()
    assert account["ProductionAccessEnabled"] is True
    assert account["SendQuota"]["MaxSendRate"] == 1.0  # lowered here; 14 by default


# -- Herd's side: the client factory paces by the table and names a quota reached -----------
def herd_settings(moto: MotoServer, **update: Any) -> Settings:
    """Herd's clients against `moto`, throttles retried only as aws_max_attempts says (the
    suite's own calls retry them: conftest)."""
    update = {"aws_throttle_attempts": None, **update}
    return moto.settings(get_settings(), aws_region=REGION, aws_quotas=dict(LOWERED), **update)


def test_herds_clients_queue_a_burst_inside_the_rate(lowered: MotoServer) -> None:
    """The burst that plain boto3 gets throttled (test above) waits in line: every call
    of Herd's clients goes through the process's pacer for its category."""
    pacing.reset()
    settings = herd_settings(lowered, aws_max_attempts=1, aws_pace_share=0.8)
    idp = aws.client("cognito-idp", settings)
    user_pool = pool(idp)
    time.sleep(1.1)
    began = time.monotonic()
    passed, errors = at_once(
        [
            lambda: idp.admin_create_user(
                UserPoolId=user_pool, Username=f"p-{uuid.uuid4().hex[:8]}", MessageAction="SUPPRESS"
            )
        ]
        * 4
    )
    assert (passed, errors) == (4, [])
    # 1 a second less the headroom left to other callers (aws_pace_share 0.8): 1.25 s apart.
    assert time.monotonic() - began >= 3 * 1.25 - 0.1


def test_a_retry_of_a_throttled_call_waits_its_turn_too(lowered: MotoServer) -> None:
    """AWS counts each attempt: a throttled call's retry goes through the pacer as its
    first attempt did (before: only first attempts were paced, and retries took the share
    left to the account's other callers)."""
    pacing.reset()
    proxy = FaultProxy(lowered.url).start()
    try:
        # SES's 1 a second per action, 40% of it ours: 2.5 s between two attempts, more than
        # botocore's first backoff (at most 2 s) could ever make by itself.
        settings = herd_settings(
            lowered, aws_max_attempts=3, aws_pace_share=0.4, aws_endpoint_url=proxy.url
        )
        ses = aws.client("ses", settings)
        sent: list[float] = []
        ses.meta.events.register(
            "before-send.ses.GetTemplate", lambda **_: sent.append(time.monotonic())
        )
        proxy.fail("GetTemplate", times=1, fault="throttle")
        with pytest.raises(ClientError) as err:
            ses.get_template(TemplateName=f"none-{uuid.uuid4().hex[:6]}")
        assert err.value.response["Error"]["Code"] == "TemplateDoesNotExist"  # 2nd attempt
        assert len(sent) == 2
        assert sent[1] - sent[0] >= 2.5 - 0.05
    finally:
        proxy.stop()


def test_a_quota_reached_is_named_counted_and_never_retried(
    lowered: MotoServer, tmp_path: Path
) -> None:
    """botocore's standard mode retries LimitExceededException as a throttle; Herd's clients
    answer it at once, counted, and classify it as QuotaExceeded (not Recoverable)."""
    proxy = FaultProxy(lowered.url).start()
    try:
        settings = herd_settings(lowered, aws_max_attempts=5, aws_endpoint_url=proxy.url)
        idp = aws.client("cognito-idp", settings)
        full = pool(idp)
        for i in range(3):
            idp.create_user_pool_client(UserPoolId=full, ClientName=f"c{i}")
        with pytest.raises(ClientError) as err:
            idp.create_user_pool_client(UserPoolId=full, ClientName="c3")
        assert proxy.count("CreateUserPoolClient") == 4  # the refused one once, no retries
        reached = err.value.response["Error"]["Quota"]
        assert reached == {
            "Key": "cognito.app_clients_per_user_pool",
            "Used": 3,
            "Where": f"in user pool {full}",
            "Limit": 3.0,
        }
        meaning = classify(err.value)
        # Terminal as InvalidSpec: the operator looks again when the spec changes, or once
        # after a slow delay (test_quota_exceeded), never as a throttle.
        assert isinstance(meaning, QuotaExceeded) and meaning.terminal
        assert (meaning.key, meaning.used, meaning.limit) == (reached["Key"], 3, 3.0)
        assert str(meaning).startswith(
            f"AWS quota reached: App clients per user pool in user pool {full} (3 of 3 used; "
            "AWS default 1,000, at most 10,000); request an increase in Service Quotas"
        )
        # A throttle is still a throttle: retried, and Recoverable if it lasts.
        proxy.fail("DescribeUserPool", times=5)
        with pytest.raises(ClientError) as throttled:
            idp.describe_user_pool(UserPoolId=full)
        assert proxy.count("DescribeUserPool") == 5
        assert isinstance(classify(throttled.value), Recoverable)
    finally:
        proxy.stop()


def test_herd_aws_quotas_shows_the_headroom(sandbox: MotoServer) -> None:
    """`herd aws quotas --env dev` against an environment as `herd aws bootstrap` makes it:
    the platform pool's app clients (bootstrap's and two more) against the account's limit,
    as HERD_AWS_QUOTAS gives it; SES in the sandbox. Exit 1: a quota 80% used."""
    time.sleep(1.1)  # after the sandbox test's SES calls: each action once a second
    settings = sandbox.settings(get_settings(), aws_region=REGION, aws_name_prefix="dev-")
    env = bootstrap.bootstrap(settings)
    idp = aws.client("cognito-idp", settings)
    for i in range(2):
        idp.create_user_pool_client(UserPoolId=env.user_pool_id, ClientName=f"tenant-{i}")
    made = len(idp.list_user_pool_clients(UserPoolId=env.user_pool_id)["UserPoolClients"])
    result = subprocess.run(
        [sys.executable, "-m", "herd_core", "aws", "quotas", "--env", "dev", "-o", "json"],
        env={
            **without_aws(os.environ),
            **sandbox.env(REGION),
            "HERD_AWS_QUOTAS": json.dumps({"cognito.app_clients_per_user_pool": made}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    rows = {r["quota"]: r for r in json.loads(result.stdout)}
    clients = rows["cognito.app_clients_per_user_pool"]
    assert (clients["used"], clients["limit"], clients["share"]) == (made, made, 1.0)
    assert clients["scope"] == f"dev-herd-platform ({env.user_pool_id})"
    assert (clients["default"], clients["maximum"]) == (1000, 10000)
    pools = rows["cognito.user_pools_per_region"]
    assert pools["used"] >= 1 and pools["limit"] == 1000
    assert rows["ses.identities_per_region"]["used"] >= 1  # the sender
    sending = rows["ses.sending_quota"]
    assert (sending["limit"], sending["note"]) == (200.0, "in the SES sandbox")
    assert rows["ses.sending_rate"]["limit"] == 1.0


def test_a_throttled_call_is_tried_again_up_to_the_throttle_attempts(
    lowered: MotoServer,
) -> None:
    """A throttled call was not made: aws_throttle_attempts tries it again even where
    aws_max_attempts makes one attempt (which the programs' own retries then see as one)."""
    proxy = FaultProxy(lowered.url).start()
    try:
        once = herd_settings(lowered, aws_max_attempts=1, aws_endpoint_url=proxy.url)
        idp = aws.client("cognito-idp", once)
        proxy.fail("ListUserPools", times=1)
        with pytest.raises(ClientError):
            idp.list_user_pools(MaxResults=1)
        assert proxy.count("ListUserPools") == 1
        patient = aws.client("cognito-idp", once.model_copy(update={"aws_throttle_attempts": 3}))
        proxy.fail("ListUserPools", times=2)
        patient.list_user_pools(MaxResults=1)
        assert proxy.count("ListUserPools") == 1 + 3
    finally:
        proxy.stop()
