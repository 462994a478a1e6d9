"""moto_sqs's retention check answers as moto's own, on moto's in-process SQS."""

from __future__ import annotations

import boto3
from moto import mock_aws
from moto.sqs.models import SQSBackend, sqs_backends

from herd_devkit.local import moto_sqs

ACCOUNT, REGION = "123456789012", "eu-west-1"


@mock_aws
def test_retention_is_moto_s_answer_without_moto_s_count() -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    sqs.send_message(QueueUrl=url, MessageBody="old")
    backend: SQSBackend = sqs_backends[ACCOUNT][REGION]
    fresh, old = backend.get_queue("q")._messages
    old.sent_timestamp -= 61_000  # sent 61 s ago: past the queue's 60 s
    original = SQSBackend.is_message_valid_based_on_retention_period
    for message in (fresh, old):
        assert moto_sqs.retained(backend, "q", message) == original(backend, "q", message)
    assert (moto_sqs.retained(backend, "q", fresh), moto_sqs.retained(backend, "q", old)) == (
        True,
        False,
    )
