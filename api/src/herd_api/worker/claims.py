"""Idempotency through DynamoDB: a conditional write claims a job key before sending.

States of an item: `sending` (claimed by one worker's token, until `leaseUntil`) and `sent`
(with the SES message id and when). The holder renews the lease while it works; a claim whose
lease ran out belongs to a worker that died and may be taken over. The lease is never longer
than the message's visibility timeout, so by the time SQS shows the message again the claim
of a dead worker has lapsed: a kill right after the claim costs one lease, never the email.
A send starts only with half a lease still ahead and may take at most that long, so no other
worker can take a key over while its email is on the way, even if every renewal fails.

SES has no idempotency token, so a duplicate can still happen in one window: SES took the
email but we never heard so (a crash before the `sent` write, an answer late or lost). The
worker retries such a send later, once, and counts it (`herd_emails_unknown_outcome_total`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class Claim:
    won: bool
    token: str = ""  # ours, when won: renewals and releases must carry it
    sent_message_id: str | None = None  # set when the job was already sent
    sent_at: float | None = None
    held_until: float | None = None  # another worker's lease, when it holds the key
    lease_until: float = 0.0  # ours, when won: its end by our clock, taken before the write


def _conditional_failed(err: ClientError) -> bool:
    return bool(err.response["Error"]["Code"] == "ConditionalCheckFailedException")


class Claims:
    def __init__(self, ddb: Any, table: str, lease: float) -> None:
        self._ddb, self._table, self.lease = ddb, table, lease

    def _sending(self, key: str, token: str, now: float) -> dict[str, Any]:
        """The item of a claim held by `token` from `now` for one lease."""
        return {
            "key": {"S": key},
            "state": {"S": "sending"},
            "owner": {"S": token},
            "claimedAt": {"N": f"{now:.3f}"},
            "leaseUntil": {"N": f"{now + self.lease:.3f}"},
        }

    def claim(self, key: str) -> Claim:
        now, token = time.time(), uuid.uuid4().hex
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=self._sending(key, token, now),
                ConditionExpression="attribute_not_exists(#k) OR (#s = :sending AND #l < :now)",
                ExpressionAttributeNames={"#k": "key", "#s": "state", "#l": "leaseUntil"},
                ExpressionAttributeValues={
                    ":sending": {"S": "sending"},
                    ":now": {"N": f"{now:.3f}"},
                },
            )
        except ClientError as err:
            if not _conditional_failed(err):
                raise
            item = self._ddb.get_item(
                TableName=self._table, Key={"key": {"S": key}}, ConsistentRead=True
            ).get("Item", {})
            if item.get("state", {}).get("S") == "sent":
                return Claim(
                    won=False,
                    sent_message_id=item.get("messageId", {}).get("S"),
                    sent_at=float(item["sentAt"]["N"]) if "sentAt" in item else None,
                )
            until = item.get("leaseUntil", {}).get("N")
            return Claim(won=False, held_until=float(until) if until else now + self.lease)
        return Claim(won=True, token=token, lease_until=now + self.lease)

    def renew(self, key: str, token: str) -> float | None:
        """Push our lease on: its new end (reckoned from before the call, so never later than
        DynamoDB holds it), or None when the claim is no longer ours. (A conditional put, as
        the claim itself: the worker's policy needs no UpdateItem.)"""
        now = time.time()
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=self._sending(key, token, now),
                ConditionExpression="#o = :me AND #s = :sending",
                ExpressionAttributeNames={"#o": "owner", "#s": "state"},
                ExpressionAttributeValues={":me": {"S": token}, ":sending": {"S": "sending"}},
            )
        except ClientError as err:
            if _conditional_failed(err):
                return None
            raise
        return now + self.lease

    def sent(self, key: str, message_id: str, sent_at: float) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "key": {"S": key},
                "state": {"S": "sent"},
                "messageId": {"S": message_id},
                "sentAt": {"N": f"{sent_at:.3f}"},
            },
        )

    def release(self, key: str, token: str) -> None:
        """Give our claim back after a failed send, so a retry may claim it at once."""
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key={"key": {"S": key}},
                ConditionExpression="#s = :sending AND #o = :me",
                ExpressionAttributeNames={"#s": "state", "#o": "owner"},
                ExpressionAttributeValues={":sending": {"S": "sending"}, ":me": {"S": token}},
            )
        except ClientError as err:
            if not _conditional_failed(err):
                raise
