"""moto in server mode round-trips every AWS service Herd uses, through the one client factory."""

from __future__ import annotations

import http.client
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from herd_core import aws
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings, get_settings


def test_client_factory_targets_the_endpoint(aws_settings: Settings) -> None:
    ses = aws_client("ses", aws_settings)
    assert ses.meta.endpoint_url == aws_settings.aws_endpoint_url
    assert ses.meta.region_name == "eu-west-1"
    assert ses.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}


def aws_client(service: str, settings: Settings) -> Any:
    return aws.client(service, settings)


def test_ses_templated_email_lands_in_moto_data(tmp_path: Path) -> None:
    # A moto of its own: the reset below must not wipe what other tests' operator made.
    moto = MotoServer(root=tmp_path).start()
    settings = moto.settings(get_settings(), aws_max_attempts=1)
    try:
        _send_and_reset(aws_client("ses", settings), moto)
    finally:
        moto.stop()
    assert not moto.running()


def _send_and_reset(ses: Any, moto: MotoServer) -> None:
    ses.verify_email_identity(EmailAddress="noreply@herd-itt.com")
    ses.create_template(
        Template={
            "TemplateName": "welcome",
            "SubjectPart": "Hi {{name}}",
            "TextPart": "Hello {{name}}",
        }
    )
    ses.send_templated_email(
        Source="noreply@herd-itt.com",
        Destination={"ToAddresses": ["ann@example.com"]},
        Template="welcome",
        TemplateData=json.dumps({"name": "Ann"}),
    )
    sent = moto.data()["ses"]["TemplateMessage"]
    assert [(m["template"], m["destinations"]["ToAddresses"]) for m in sent] == [
        ("welcome", ["ann@example.com"])
    ]

    moto.reset()
    assert moto.data()["ses"]["TemplateMessage"] == []


def test_sqs_dynamodb_cognito_round_trip(aws_settings: Settings) -> None:
    sqs = aws_client("sqs", aws_settings)
    url = sqs.create_queue(QueueName="emails")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["hello"]

    ddb = aws_client("dynamodb", aws_settings)
    ddb.create_table(
        TableName="jobs",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
    )
    put = {
        "TableName": "jobs",
        "Item": {"key": {"S": "k1"}},
        "ConditionExpression": "attribute_not_exists(#k)",
        "ExpressionAttributeNames": {"#k": "key"},
    }
    ddb.put_item(**put)
    with pytest.raises(ClientError) as err:
        ddb.put_item(**put)
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"

    idp = aws_client("cognito-idp", aws_settings)
    pool = idp.create_user_pool(PoolName="herd")["UserPool"]["Id"]
    idp.admin_create_user(UserPoolId=pool, Username="ann@example.com", MessageAction="SUPPRESS")
    users = idp.list_users(UserPoolId=pool)["Users"]
    assert [u["Username"] for u in users] == ["ann@example.com"]


def test_concurrent_signups_into_a_large_pool_all_succeed(tmp_path: Path) -> None:
    """moto 5.2's Cognito pool looks a user up by email by iterating over its users, and
    answers 500 when another request thread adds one meanwhile (4 of 1,500 and 84 of 4,000
    such calls failed on stock `moto.server`). The local moto handles one request at a time."""
    # The race, not AWS's rate: UserCreation's 50/s would pace the 2,000 over 40 s.
    unpaced = {"cognito.rate.UserCreation": 1e6}
    moto = MotoServer(root=tmp_path, server_env={"HERD_AWS_QUOTAS": json.dumps(unpaced)}).start()
    settings = moto.settings(get_settings(), aws_max_attempts=1, aws_quotas=unpaced)
    try:
        cognito = aws.client("cognito-idp", settings)
        pool = cognito.create_user_pool(PoolName="big", UsernameAttributes=["email"])
        pool_id = pool["UserPool"]["Id"]

        def create(i: int) -> str | None:
            email = f"user{i}@example.com"
            try:
                cognito.admin_create_user(
                    UserPoolId=pool_id,
                    Username=email,
                    MessageAction="SUPPRESS",
                    UserAttributes=[{"Name": "email", "Value": email}],
                )
            except ClientError as err:
                return str(err)
            return None

        with ThreadPoolExecutor(16) as pool_threads:
            failures = [f for f in pool_threads.map(create, range(2000)) if f]
        assert failures == []
        assert (
            cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["EstimatedNumberOfUsers"]
            == 2000
        )
    finally:
        moto.stop()


def test_a_long_poll_does_not_hold_up_other_calls(aws_settings: Settings) -> None:
    """SQS long polls wait inside moto: they stay outside the one-at-a-time lock."""
    sqs = aws_client("sqs", aws_settings)
    url = sqs.create_queue(QueueName=f"poll-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=10)
        # Twenty calls one after another: the poll is inside moto well before the last, and
        # a call queued behind it would return only when its 10 s were over.
        cognito = aws_client("cognito-idp", aws_settings)
        for _ in range(20):
            cognito.list_user_pools(MaxResults=1)
        assert not polling.done(), "the calls above returned only after the long poll"
        sqs.send_message(QueueUrl=url, MessageBody="wake")
        assert [m["Body"] for m in polling.result(timeout=15)["Messages"]] == ["wake"]


def test_connections_are_kept_open_as_aws_keeps_them(aws_settings: Settings) -> None:
    """One connection carries many calls, as on AWS (werkzeug alone closed each one, a TCP
    connect per call that no real account costs): a body the handler left unread does not
    leak into the next request, and a client's own `Connection: close` still closes."""
    url = urlsplit(aws_settings.aws_endpoint_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    auth = "AWS4-HMAC-SHA256 Credential=a/20260101/eu-west-1/cognito-idp/aws4_request, "
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "Authorization": auth + "SignedHeaders=host, Signature=x",
    }
    try:
        socks = set()
        for target, body in [
            ("ListUserPools", b'{"MaxResults": 1}'),
            ("NoSuchOperation", b'{"padding": "' + b"x" * 200_000 + b'"}'),
            ("ListUserPools", b'{"MaxResults": 2}'),
        ]:
            conn.request(
                "POST",
                "/",
                body=body,
                headers={**headers, "X-Amz-Target": f"AWSCognitoIdentityProviderService.{target}"},
            )
            answer = conn.getresponse()
            text = answer.read()
            assert not answer.will_close, answer.getheaders()
            socks.add(id(conn.sock))
            if target == "ListUserPools":
                assert answer.status == 200 and "UserPools" in json.loads(text)
        assert len(socks) == 1, "a call opened a connection of its own"
        conn.request("POST", "/", body=b"{}", headers={**headers, "Connection": "close"})
        answer = conn.getresponse()
        answer.read()
        assert answer.will_close
    finally:
        conn.close()


def test_users_are_found_by_email_as_moto_finds_them(aws_settings: Settings) -> None:
    """moto_index answers what moto's scan answered: the user whose email it is now, after
    creations, an email changed and a user deleted; a taken email is still refused."""
    idp = aws.client("cognito-idp", aws_settings)
    pool = idp.create_user_pool(
        PoolName=f"index-{uuid.uuid4().hex[:8]}", UsernameAttributes=["email"]
    )["UserPool"]["Id"]

    def create(email: str) -> str:
        user = idp.admin_create_user(
            UserPoolId=pool,
            Username=email,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}],
        )["User"]
        return str(user["Username"])

    def found(email: str) -> str | None:
        try:
            return str(idp.admin_get_user(UserPoolId=pool, Username=email)["Username"])
        except idp.exceptions.UserNotFoundException:
            return None

    a, b = create("a@example.com"), create("b@example.com")
    assert (found("a@example.com"), found("b@example.com")) == (a, b)
    with pytest.raises(idp.exceptions.UsernameExistsException):
        create("b@example.com")
    idp.admin_update_user_attributes(
        UserPoolId=pool,
        Username="b@example.com",
        UserAttributes=[{"Name": "email", "Value": "c@example.com"}],
    )
    assert (found("b@example.com"), found("c@example.com")) == (None, b)
    assert create("b@example.com") not in (a, b)  # the old address is free again
    idp.admin_delete_user(UserPoolId=pool, Username="a@example.com")
    assert found("a@example.com") is None
    assert found(a) is None  # nor by its own username
    again = create("a@example.com")
    assert found("a@example.com") == again != a


def test_sending_to_a_queue_keeps_moto_s_answers(aws_settings: Settings) -> None:
    """moto_sqs: SendMessage no longer counts the queue; a FIFO queue's content-based
    deduplication still holds, and the counts are still there for GetQueueAttributes."""
    sqs = aws.client("sqs", aws_settings)
    name = uuid.uuid4().hex[:8]
    plain = sqs.create_queue(QueueName=f"plain-{name}")["QueueUrl"]
    fifo = sqs.create_queue(
        QueueName=f"fifo-{name}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=plain, MessageBody="same")
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")

    def count(url: str) -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return str(attributes["ApproximateNumberOfMessages"])

    assert (count(plain), count(fifo)) == ("3", "1")
    fifo_attributes = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])
    assert fifo_attributes["Attributes"]["ContentBasedDeduplication"] == "true"
