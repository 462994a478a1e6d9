"""Idempotency through DynamoDB: a conditional write claims a job key before sending.

States of an item: `sending` (claimed, with the time) and `sent` (with the SES message id).
A `sending` claim older than the lease belongs to a worker that died mid-send and may be
taken over: SES has no idempotency token, so the one window where a duplicate can still
happen is a crash between SES accepting the email and the `sent` write (documented).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class Claim:
    won: bool
    sent_message_id: str | None = None  # set when the job was already sent


class Claims:
    def __init__(self, ddb: Any, table: str, lease: float) -> None:
        self._ddb, self._table, self._lease = ddb, table, lease

    def claim(self, key: str) -> Claim:
        now = time.time()
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={
                    "key": {"S": key},
                    "state": {"S": "sending"},
                    "claimedAt": {"N": f"{now:.3f}"},
                },
                ConditionExpression="attribute_not_exists(#k) OR (#s = :sending AND #t < :stale)",
                ExpressionAttributeNames={"#k": "key", "#s": "state", "#t": "claimedAt"},
                ExpressionAttributeValues={
                    ":sending": {"S": "sending"},
                    ":stale": {"N": f"{now - self._lease:.3f}"},
                },
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = self._ddb.get_item(
                TableName=self._table, Key={"key": {"S": key}}, ConsistentRead=True
            ).get("Item", {})
            if item.get("state", {}).get("S") == "sent":
                return Claim(won=False, sent_message_id=item.get("messageId", {}).get("S"))
            return Claim(won=False)
        return Claim(won=True)

    def sent(self, key: str, message_id: str) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "key": {"S": key},
                "state": {"S": "sent"},
                "messageId": {"S": message_id},
                "sentAt": {"N": f"{time.time():.3f}"},
            },
        )

    def release(self, key: str) -> None:
        """Give the claim back after a failed send, so a retry may claim it."""
        self._ddb.delete_item(
            TableName=self._table,
            Key={"key": {"S": key}},
            ConditionExpression="#s = :sending",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":sending": {"S": "sending"}},
        )
