"""The local AWS holds what AWS holds and moto does not (herd_devkit.local.aws_rules): an app
client's attribute permissions, SQS's batch limits. Plain boto3 against the session's moto, as any
client."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herd_core import aws
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

PASSWORD = "Rules-Passw0rd!"


def idp(settings: Settings) -> Any:
    return aws.client("cognito-idp", settings)


def pool_with_user(settings: Settings) -> tuple[str, str]:
    """A pool like the platform's (a mutable custom:tenant, an immutable custom:plan) and a
    user of it with tenant "a"."""
    cognito = idp(settings)
    pool = cognito.create_user_pool(
        PoolName=f"rules-{uuid.uuid4().hex[:8]}",
        UsernameAttributes=["email"],
        Schema=[
            {"Name": "tenant", "AttributeDataType": "String", "Mutable": True},
            {"Name": "plan", "AttributeDataType": "String", "Mutable": False},
        ],
    )["UserPool"]["Id"]
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    cognito.admin_create_user(
        UserPoolId=pool,
        Username=email,
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "custom:tenant", "Value": "a"},
            {"Name": "custom:plan", "Value": "starter"},
        ],
    )
    cognito.admin_set_user_password(
        UserPoolId=pool, Username=email, Password=PASSWORD, Permanent=True
    )
    return pool, email


def access_token(settings: Settings, pool: str, email: str, **attributes: list[str]) -> str:
    """The user's access token from a new app client with these Read/WriteAttributes."""
    cognito = idp(settings)
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName=f"c-{uuid.uuid4().hex[:8]}",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        **attributes,
    )["UserPoolClient"]["ClientId"]
    auth = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD},
    )
    return str(auth["AuthenticationResult"]["AccessToken"])


def attributes(settings: Settings, pool: str, email: str) -> dict[str, str]:
    user = idp(settings).admin_get_user(UserPoolId=pool, Username=email)
    return {a["Name"]: a["Value"] for a in user["UserAttributes"]}


def refused(settings: Settings, token: str, name: str, value: str) -> ClientError:
    with pytest.raises(ClientError) as err:
        idp(settings).update_user_attributes(
            AccessToken=token, UserAttributes=[{"Name": name, "Value": value}]
        )
    return err.value


def test_a_user_writes_only_what_the_clients_write_attributes_name(
    aws_settings: Settings,
) -> None:
    pool, email = pool_with_user(aws_settings)
    token = access_token(
        aws_settings,
        pool,
        email,
        ReadAttributes=["email", "name", "custom:tenant"],
        WriteAttributes=["name"],
    )
    err = refused(aws_settings, token, "custom:tenant", "b")
    assert err.response["Error"]["Code"] == "NotAuthorizedException"
    assert err.response["Error"]["Message"] == "A client attempted to write unauthorized attribute"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # One unauthorized attribute refuses the whole call: nothing is written.
    with pytest.raises(ClientError) as mixed:
        idp(aws_settings).update_user_attributes(
            AccessToken=token,
            UserAttributes=[
                {"Name": "name", "Value": "Ann"},
                {"Name": "custom:tenant", "Value": "b"},
            ],
        )
    assert mixed.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert "name" not in attributes(aws_settings, pool, email)
    assert attributes(aws_settings, pool, email)["custom:tenant"] == "a"

    idp(aws_settings).update_user_attributes(
        AccessToken=token, UserAttributes=[{"Name": "name", "Value": "Ann"}]
    )
    assert attributes(aws_settings, pool, email)["name"] == "Ann"
    # An administrator (IAM credentials) is not bound by any app client's permissions.
    idp(aws_settings).admin_update_user_attributes(
        UserPoolId=pool, Username=email, UserAttributes=[{"Name": "custom:tenant", "Value": "c"}]
    )
    assert attributes(aws_settings, pool, email)["custom:tenant"] == "c"


def test_without_write_attributes_every_mutable_attribute_is_writable(
    aws_settings: Settings,
) -> None:
    """AWS's default, and the hole Herd's clients close by always naming WriteAttributes."""
    pool, email = pool_with_user(aws_settings)
    token = access_token(aws_settings, pool, email)
    idp(aws_settings).update_user_attributes(
        AccessToken=token,
        UserAttributes=[
            {"Name": "custom:tenant", "Value": "b"},
            {"Name": "given_name", "Value": "Ann"},
        ],
    )
    assert attributes(aws_settings, pool, email)["custom:tenant"] == "b"
    assert attributes(aws_settings, pool, email)["given_name"] == "Ann"
    # An immutable attribute is nobody's to write, default or not.
    err = refused(aws_settings, token, "custom:plan", "enterprise")
    assert err.response["Error"]["Code"] == "NotAuthorizedException"
    assert attributes(aws_settings, pool, email)["custom:plan"] == "starter"


def test_get_user_answers_only_the_clients_read_attributes(aws_settings: Settings) -> None:
    pool, email = pool_with_user(aws_settings)
    narrow = access_token(
        aws_settings, pool, email, ReadAttributes=["email"], WriteAttributes=["name"]
    )
    answered = idp(aws_settings).get_user(AccessToken=narrow)
    names = {a["Name"] for a in answered["UserAttributes"]}
    assert names == {"email", "sub"}
    assert answered["Username"]

    # No ReadAttributes: AWS's default, every attribute.
    wide = access_token(aws_settings, pool, email)
    names = {a["Name"] for a in idp(aws_settings).get_user(AccessToken=wide)["UserAttributes"]}
    assert {"email", "sub", "custom:tenant", "custom:plan"} <= names


def test_an_unknown_token_is_still_moto_s_to_refuse(aws_settings: Settings) -> None:
    cognito = idp(aws_settings)
    with pytest.raises(ClientError) as read:
        cognito.get_user(AccessToken="not-a-token")
    with pytest.raises(ClientError) as write:
        cognito.update_user_attributes(
            AccessToken="not-a-token", UserAttributes=[{"Name": "name", "Value": "x"}]
        )
    for err in (read, write):
        assert err.value.response["Error"]["Code"] == "NotAuthorizedException"


def test_the_herd_admin_client_names_its_attributes_even_if_made_before(
    aws_settings: Settings,
) -> None:
    """`herd aws bootstrap` makes herd-admin with its attribute permissions, and puts them on
    a herd-admin made before they were (AWS's default: users write custom:tenant)."""
    pool, email = pool_with_user(aws_settings)
    old = idp(aws_settings).create_user_pool_client(
        UserPoolId=pool,
        ClientName="herd-admin",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    assert bootstrap._admin_client(aws_settings, pool) == old
    described = idp(aws_settings).describe_user_pool_client(UserPoolId=pool, ClientId=old)
    client = described["UserPoolClient"]
    assert client["WriteAttributes"] == ["name"]
    assert sorted(client["ReadAttributes"]) == ["custom:tenant", "email", "email_verified", "name"]
    assert client["ExplicitAuthFlows"] == ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    auth = idp(aws_settings).initiate_auth(
        ClientId=old,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD},
    )
    token = auth["AuthenticationResult"]["AccessToken"]
    assert refused(aws_settings, token, "custom:tenant", "b").response["Error"]["Code"] == (
        "NotAuthorizedException"
    )
    # Again: nothing to change, the same client.
    assert bootstrap._admin_client(aws_settings, pool) == old


def test_app_clients_carry_their_creation_and_modification_dates(
    aws_settings: Settings,
) -> None:
    """As AWS answers them; the operator holds CreationDate against its claim of a name."""
    pool, _ = pool_with_user(aws_settings)
    cognito = idp(aws_settings)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    made = cognito.create_user_pool_client(UserPoolId=pool, ClientName="dated")["UserPoolClient"]
    assert before <= made["CreationDate"] <= dt.datetime.now(dt.UTC)
    assert made["LastModifiedDate"] == made["CreationDate"]
    described = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=made["ClientId"])
    assert described["UserPoolClient"]["CreationDate"] == made["CreationDate"]
    updated = cognito.update_user_pool_client(
        UserPoolId=pool, ClientId=made["ClientId"], ClientName="dated", WriteAttributes=["name"]
    )["UserPoolClient"]
    assert updated["CreationDate"] == made["CreationDate"]
    assert updated["LastModifiedDate"] >= made["LastModifiedDate"]


@pytest.mark.parametrize("call", ["delete_message_batch", "change_message_visibility_batch"])
def test_sqs_batches_hold_ten_distinct_entries(aws_settings: Settings, call: str) -> None:
    sqs = aws.client("sqs", aws_settings)
    queue = sqs.create_queue(QueueName=f"rules-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for i in range(11):
        sqs.send_message(QueueUrl=queue, MessageBody=str(i))
    receipts: list[str] = []
    while len(receipts) < 11:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=60)
        receipts += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    extra = {"VisibilityTimeout": 0} if call.startswith("change") else {}
    entries = [{"Id": str(i), "ReceiptHandle": r, **extra} for i, r in enumerate(receipts)]
    batch = getattr(sqs, call)

    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as too_many:
        batch(QueueUrl=queue, Entries=entries)
    assert "You have sent 11" in str(too_many.value)
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        batch(QueueUrl=queue, Entries=[entries[0], {**entries[1], "Id": "0"}])
    # Nothing was changed by either refusal: all 11 are still in flight, and ten at once go.
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "11"
    answer = batch(QueueUrl=queue, Entries=entries[:10])
    assert len(answer["Successful"]) == 10 and not answer.get("Failed")
