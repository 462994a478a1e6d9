"""The worker process on its own: SIGTERM finishes the message in hand and releases the rest."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest

from herd_operator import aws
from herd_operator.emailjobs import EmailJob, enqueue
from herd_operator.local.moto_server import MotoServer
from herd_operator.settings import Settings

from .helpers import WorkerProcess, wait_for


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.slow
def test_sigterm_releases_what_it_has_not_sent(
    worker_env: dict[str, str],
    moto: MotoServer,
    aws_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sqs = aws.client("sqs", aws_settings)
    queue = sqs.create_queue(QueueName=f"sigterm-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    marker = uuid.uuid4().hex[:8]
    aws.client("ses", aws_settings).create_template(
        Template={"TemplateName": f"sigterm-{marker}", "SubjectPart": "Hi", "TextPart": "Hello"}
    )
    for i in range(5):
        enqueue(
            sqs,
            queue,
            EmailJob(
                idempotency_key=f"sigterm-{marker}-{i}",
                template=f"sigterm-{marker}",
                to=f"t{i}-{marker}@example.com",
                data={"displayName": "T", "slug": "t", "loginURL": "x"},
            ),
        )
    # One email every 20 s: the worker sends the first and then waits on the rate limit.
    # Its own queue is outside the worker policy's resources: it keeps no AWS call log.
    env = {k: v for k, v in worker_env.items() if k != "HERD_AWS_CALL_LOG"}
    worker = WorkerProcess(
        env={**env, "HERD_EMAIL_QUEUE_URL": queue, "HERD_WORKER_MAX_SEND_RATE": "0.05"},
        log=tmp_path_factory.mktemp("worker-sigterm") / "worker.log",
    ).start()

    def sent() -> int:
        return sum(
            1
            for m in moto.data()["ses"]["TemplateMessage"]
            if marker in m["destinations"]["ToAddresses"][0]
        )

    wait_for(lambda: sent() == 1, 30, "first email sent")
    assert worker.popen is not None
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(30) == 0
    assert "worker stopped" in worker.log_text()
    assert sent() == 1
    # The four it held are visible again at once, for another worker.
    wait_for(lambda: queue_depth(sqs, queue) == (4, 0), 10, "messages released")
