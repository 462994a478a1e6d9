"""The email worker's main paths in this process: SQS, SES and DynamoDB are moto in-process,
the Tenant status report a recording fake. tests/test_worker.py runs the real process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from herd_api.core.config import Settings as ApiSettings
from herd_api.worker import worker as worker_module
from herd_api.worker.claims import Claims
from herd_api.worker.worker import Worker
from herd_core import aws as aws_clients
from herd_core.emailjobs import EmailJob, Report, enqueue
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from .fakes import REGION

TEMPLATE = "welcome-test"


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every status report the worker makes: (report, messageId, sentAt). An exception put
    first in the list is raised instead (the API server down, RBAC missing)."""
    made: list[Any] = []

    def delivered(target: Report, message_id: str, sent_at: float) -> bool:
        if made and isinstance(made[0], Exception):
            raise made[0]
        made.append((target, message_id, sent_at))
        return True

    monkeypatch.setattr(worker_module.report, "delivered", delivered)
    return made


@pytest.fixture
def email_worker(aws: Settings, aws_side: bootstrap.Environment) -> Iterator[Worker]:
    aws_clients.client("ses", aws).create_template(
        Template={
            "TemplateName": TEMPLATE,
            "SubjectPart": "Welcome {{displayName}}",
            "TextPart": "Hello {{displayName}}",
        }
    )
    settings = ApiSettings(
        **{k.removeprefix("HERD_").lower(): v for k, v in aws_side.env().items()},
        aws_region=REGION,
        aws_max_attempts=1,
        worker_wait_seconds=0,
        worker_max_send_rate=100,
        worker_retry_base=30,
    )
    yield Worker(settings)


def sent() -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def job(key: str = "welcome-1", template: str = TEMPLATE, report: bool = True) -> EmailJob:
    return EmailJob(
        idempotency_key=key,
        template=template,
        to="admin@acme.example.com",
        data={"displayName": "Acme"},
        report=Report(namespace="tenants", name="acme", uid="uid-1") if report else None,
    )


def depth(worker: Worker) -> tuple[int, int]:
    """(visible, in flight) messages of the worker's queue."""
    attrs = worker.sqs.get_queue_attributes(
        QueueUrl=worker.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def claim(worker: Worker, key: str) -> dict[str, Any]:
    item: dict[str, Any] = worker.claims._ddb.get_item(
        TableName=worker.settings.email_jobs_table, Key={"key": {"S": key}}
    ).get("Item", {})
    return item


def test_a_job_is_sent_once_claimed_and_reported(email_worker: Worker, reports: list[Any]) -> None:
    enqueue(email_worker.sqs, email_worker.queue_url, job())
    assert email_worker.poll_once() == 1
    assert len(sent()) == 1
    item = claim(email_worker, "welcome-1")
    assert item["state"]["S"] == "sent"
    assert depth(email_worker) == (0, 0)  # deleted once sent and reported
    [(target, message_id, sent_at)] = reports
    assert (target.name, target.uid) == ("acme", "uid-1")
    assert message_id == item["messageId"]["S"]
    assert abs(sent_at - time.time()) < 60


def test_a_duplicate_job_is_dropped_and_only_reported_again(
    email_worker: Worker, reports: list[Any]
) -> None:
    enqueue(email_worker.sqs, email_worker.queue_url, job())
    email_worker.poll_once()
    enqueue(
        email_worker.sqs, email_worker.queue_url, job()
    )  # the operator re-enqueued after a crash
    assert email_worker.poll_once() == 1
    assert len(sent()) == 1
    assert depth(email_worker) == (0, 0)
    assert len(reports) == 2
    assert reports[0][1] == reports[1][1]  # the first send's message id, both times


def test_a_poison_message_is_backed_off_never_sent(
    email_worker: Worker, reports: list[Any]
) -> None:
    email_worker.sqs.send_message(QueueUrl=email_worker.queue_url, MessageBody='{"to": "nobody"}')
    email_worker.sqs.send_message(QueueUrl=email_worker.queue_url, MessageBody="not json")
    assert email_worker.poll_once() == 2
    assert sent() == [] and reports == []
    assert depth(email_worker) == (0, 2)  # hidden for the backoff; the DLQ takes them in the end


def test_a_failed_send_releases_its_claim_for_the_retry(
    email_worker: Worker, reports: list[Any]
) -> None:
    enqueue(email_worker.sqs, email_worker.queue_url, job(template="no-such-template"))
    email_worker.poll_once()
    assert sent() == []
    assert claim(email_worker, "welcome-1") == {}  # released: the retry may claim it at once
    assert depth(email_worker) == (0, 1)


def test_a_failed_report_is_retried_without_a_second_email(
    email_worker: Worker, reports: list[Any]
) -> None:
    reports.append(RuntimeError("403 from the API server"))
    enqueue(email_worker.sqs, email_worker.queue_url, job())
    email_worker.poll_once()
    assert len(sent()) == 1
    assert depth(email_worker) == (0, 1)  # kept for the report's retry
    reports.clear()  # the API server answers again; the redelivery (here: a new copy)
    enqueue(email_worker.sqs, email_worker.queue_url, job())
    email_worker.poll_once()
    assert len(sent()) == 1
    assert len(reports) == 1


def test_a_key_another_worker_holds_is_deferred(email_worker: Worker, reports: list[Any]) -> None:
    other = Claims(email_worker.claims._ddb, email_worker.settings.email_jobs_table, lease=30)
    assert other.claim("welcome-1").won
    enqueue(email_worker.sqs, email_worker.queue_url, job())
    email_worker.poll_once()
    assert sent() == [] and reports == []
    assert claim(email_worker, "welcome-1")["state"]["S"] == "sending"
    assert depth(email_worker) == (0, 1)  # hidden until the other's lease ends


def test_a_stopping_worker_releases_what_it_has_not_started(
    email_worker: Worker, reports: list[Any]
) -> None:
    for i in range(3):
        enqueue(email_worker.sqs, email_worker.queue_url, job(key=f"k-{i}", report=False))
    email_worker.stop.set()  # SIGTERM before the first message
    assert email_worker.poll_once() == 3
    assert sent() == []
    assert depth(email_worker) == (3, 0)  # visible again at once, for another email_worker
