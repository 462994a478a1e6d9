"""`herd worker run`: long-polls the email queue and sends SES templated emails.

- Rate: honours SES's MaxSendRate (GetSendQuota), unless configured.
- Exactly once per idempotency key: a DynamoDB conditional write claims the key first.
- Failures: the message's visibility is set to an exponential backoff; after the queue's
  maxReceiveCount SQS moves it to the dead-letter queue. A message that does not parse is
  such a poison message too.
- SIGTERM: the message in hand is finished; messages received but not started are released.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter
from pydantic import ValidationError

from herd_api.core.config import Settings
from herd_api.core.ratelimit import TokenBucket
from herd_api.worker import report
from herd_api.worker.claims import Claims
from herd_operator import aws
from herd_operator.clients.ses import SES
from herd_operator.emailjobs import EmailJob, mask_email
from herd_operator.settings import Settings as AwsSettings

log = logging.getLogger("herd.worker")

SENT = Counter("herd_emails_sent_total", "Emails sent through SES")
DUPLICATES = Counter("herd_emails_duplicate_total", "Deliveries skipped: already sent")
FAILED = Counter("herd_emails_failed_total", "Failed email jobs, by reason", ["reason"])


@dataclass
class Worker:
    settings: Settings
    aws_settings: AwsSettings
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.aws_settings.email_queue_url:
            raise ValueError("HERD_EMAIL_QUEUE_URL is not set")
        self.queue_url: str = self.aws_settings.email_queue_url
        self.sqs: Any = aws.client("sqs", self.aws_settings)
        self.ses = SES(self.aws_settings)
        self.claims = Claims(
            aws.client("dynamodb", self.aws_settings),
            self.aws_settings.email_jobs_table,  # full name, environment prefix included
            self.settings.worker_claim_lease,
        )
        rate = self.settings.worker_max_send_rate or self.ses.max_send_rate()
        self.bucket = TokenBucket(rate, burst=max(1.0, rate))
        log.info("worker ready: queue %s, %.3g emails/s", self.queue_url.rsplit("/", 1)[-1], rate)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll_once()
        log.info("worker stopped")

    def poll_once(self) -> int:
        try:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.settings.worker_wait_seconds,
                VisibilityTimeout=self.settings.worker_visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
        except (ClientError, BotoCoreError) as err:
            log.warning("receive failed: %s", err)
            self.stop.wait(self.settings.worker_retry_base)
            return 0
        for i, message in enumerate(messages):
            if self.stop.is_set():
                self._release(messages[i:])  # SIGTERM: give the rest back at once
                break
            self.handle(message)
        return len(messages)

    def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            job = EmailJob.model_validate(json.loads(message["Body"]))
        except (ValueError, ValidationError) as err:
            FAILED.labels("invalid").inc()
            log.error(
                "poison message %s (receive %d): %s",
                message["MessageId"],
                receives,
                str(err).splitlines()[0],
            )
            self._retry_later(receipt, receives)
            return
        claim = self.claims.claim(job.idempotency_key)
        if not claim.won:
            if claim.sent_message_id:
                DUPLICATES.inc()
                log.info("job %s already sent; dropping the duplicate", job.idempotency_key)
                if job.report:
                    report.delivered(job.report, claim.sent_message_id)
                self._delete(receipt)
            else:
                self._retry_later(receipt, receives)  # another worker is sending it now
            return
        if not self.bucket.take(self.stop):
            self.claims.release(job.idempotency_key)
            self._retry_later(receipt, 0)
            return
        try:
            message_id = self.ses.send_templated(
                self.aws_settings.email_sender, job.to, job.template, job.data
            )
        except (ClientError, BotoCoreError) as err:
            FAILED.labels("ses").inc()
            log.warning(
                "send of job %s to %s failed (receive %d): %s",
                job.idempotency_key,
                mask_email(job.to),
                receives,
                err,
            )
            self.claims.release(job.idempotency_key)
            self._retry_later(receipt, receives)
            return
        self.claims.sent(job.idempotency_key, message_id)
        SENT.inc()
        log.info(
            "sent job %s (template %s) to %s", job.idempotency_key, job.template, mask_email(job.to)
        )
        if job.report:
            report.delivered(job.report, message_id)
        self._delete(receipt)

    def _delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

    def _retry_later(self, receipt: str, receives: int) -> None:
        delay = min(43200, int(self.settings.worker_retry_base * 2 ** max(receives - 1, 0)))
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
        )

    def _release(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
