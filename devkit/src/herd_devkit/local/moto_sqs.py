"""SendMessage and ReceiveMessage without counting the queue, for the local moto.

moto 5.2's SendMessage asks the queue for all its attributes to read one
(ContentBasedDeduplication), and those include ApproximateNumberOfMessages and two other
counts, each a pass over every message with clock arithmetic. With thousands of welcome
emails queued (bench/tenants.py, 10,000 Tenants) every enqueue cost tens of milliseconds of
moto's CPU, which every other call then waited for: the backlog slowed the sends that would
have drained it. AWS does not count a queue to accept a message; nor does this.

Within a SendMessage (and SendMessageBatch) the queue's attributes are the one it reads,
computed as moto computes it; everywhere else (GetQueueAttributes) they are moto's own.
ReceiveMessage asked for all of them for each message it looked at; it reads the retention
period alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import Queue, SQSBackend

_sending = threading.local()
_all_attributes: property = Queue.attributes  # type: ignore[assignment]


def _attributes(queue: Queue) -> dict[str, Any]:
    if not getattr(_sending, "active", False):
        return _all_attributes.fget(queue)  # type: ignore[misc, no-any-return]
    if not queue.fifo_queue:
        return {}  # only FIFO queues have ContentBasedDeduplication
    value = queue.content_based_deduplication  # type: ignore[attr-defined]
    return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}


def _while_sending(send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _sending.active = False

    return wrapped


def retained(backend: SQSBackend, queue_name: str, message: Any) -> bool:
    """moto's is_message_valid_based_on_retention_period, reading the one attribute: moto
    asked for all of them, for each message a ReceiveMessage looks at (a pass over the queue
    per message: minutes for one receive with 8,000 queued)."""
    retention = backend.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
    return bool(int(retention) + message.sent_timestamp / 1000 > unix_time())


def install() -> None:
    if getattr(SQSBackend.send_message, "__wrapped__", None) is not None:
        return  # installed already
    Queue.attributes = property(_attributes)  # type: ignore[assignment, method-assign]
    SQSBackend.send_message = _while_sending(SQSBackend.send_message)  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign, assignment]
