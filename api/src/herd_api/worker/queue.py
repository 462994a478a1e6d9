"""What both queue workers (emails, thumbnails) do with SQS the same way: a batch receive
that never raises, and a thread that keeps a dead-letter queue's depth in a gauge."""

from __future__ import annotations

import logging
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Gauge

from herd_api.core.config import Settings

log = logging.getLogger(__name__)


def receive(
    sqs: Any, queue_url: str, settings: Settings, stop: threading.Event, most: int = 10
) -> list[Any]:
    """One long-poll batch (at most `most` and the batch size); on an SQS error, [] after
    the retry delay (a worker never dies of a failed receive)."""
    try:
        return list(
            sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(settings.worker_batch_size, most),
                WaitTimeSeconds=settings.worker_wait_seconds,
                VisibilityTimeout=settings.worker_visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
        )
    except (ClientError, BotoCoreError) as err:
        log.warning("receive failed: %s", err)
        stop.wait(settings.worker_retry_base)
        return []


def watch_depth(
    sqs: Any, dlq_url: str, gauge: Gauge, settings: Settings, stop: threading.Event
) -> None:
    """Start a daemon thread that sets `gauge` to the DLQ's depth until `stop`."""

    def watch() -> None:
        while not stop.is_set():
            try:
                attrs = sqs.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                gauge.set(int(attrs["ApproximateNumberOfMessages"]))
            except Exception as err:  # a metric never stops the worker
                log.warning("reading the dead-letter queue's depth failed: %s", err)
            stop.wait(settings.worker_dlq_interval)

    threading.Thread(target=watch, daemon=True, name="dlq-depth").start()
