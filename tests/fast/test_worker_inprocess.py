"""The email worker's main paths in this process: SQS, SES and DynamoDB are moto in-process,
the Tenant status report a recording fake. tests/test_worker.py runs the real process."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from herd_api.core.config import Settings as ApiSettings
from herd_api.worker import worker as worker_module
from herd_api.worker.claims import Claims
from herd_api.worker.worker import Worker
from herd_core import aws as aws_clients
from herd_core.emailjobs import EmailJob, Report, enqueue
from herd_core.ses import outcome_unknown
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from .fakes import REGION


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


@dataclass
class Rig:
    """A worker on this test's own queue, table and template (names under its prefix)."""

    worker: Worker
    prefix: str

    @property
    def to(self) -> str:
        return f"admin@{self.prefix}example.com"

    def job(self, key: str = "welcome-1", template: str = "", report: bool = True) -> None:
        """Enqueue a job as the operator does."""
        job = EmailJob(
            idempotency_key=key,
            template=template or f"{self.prefix}welcome",
            to=self.to,
            data={"displayName": "Acme"},
            report=Report(namespace="tenants", name="acme", uid="uid-1") if report else None,
        )
        enqueue(self.worker.sqs, self.worker.queue_url, job)

    def raw(self, body: str) -> None:
        self.worker.sqs.send_message(QueueUrl=self.worker.queue_url, MessageBody=body)

    def sent(self) -> list[Any]:
        """The emails SES took for this test's recipient."""
        backend = ses_backends[DEFAULT_ACCOUNT_ID][REGION]
        return [m for m in backend.sent_messages if self.to in m.destinations["ToAddresses"]]

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        attrs = self.worker.sqs.get_queue_attributes(
            QueueUrl=self.worker.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def claim(self, key: str) -> dict[str, Any]:
        item: dict[str, Any] = self.worker.claims._ddb.get_item(
            TableName=self.worker.settings.email_jobs_table, Key={"key": {"S": key}}
        ).get("Item", {})
        return item


@pytest.fixture
def rig(aws: Settings, aws_side: bootstrap.Environment) -> Rig:
    aws_clients.client("ses", aws).create_template(
        Template={
            "TemplateName": f"{aws.aws_name_prefix}welcome",
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
    return Rig(Worker(settings), aws.aws_name_prefix)


def test_a_job_is_sent_once_claimed_and_reported(rig: Rig, reports: list[Any]) -> None:
    rig.job()
    assert rig.worker.poll_once() == 1
    assert len(rig.sent()) == 1
    item = rig.claim("welcome-1")
    assert item["state"]["S"] == "sent"
    assert rig.depth() == (0, 0)  # deleted once sent and reported
    [(target, message_id, sent_at)] = reports
    assert (target.name, target.uid) == ("acme", "uid-1")
    assert message_id == item["messageId"]["S"]
    assert abs(sent_at - time.time()) < 60


def test_a_duplicate_job_is_dropped_and_only_reported_again(rig: Rig, reports: list[Any]) -> None:
    rig.job()
    rig.worker.poll_once()
    rig.job()  # the operator re-enqueued after a crash
    assert rig.worker.poll_once() == 1
    assert len(rig.sent()) == 1
    assert rig.depth() == (0, 0)
    assert len(reports) == 2
    assert reports[0][1] == reports[1][1]  # the first send's message id, both times


def test_a_poison_message_is_backed_off_never_sent(rig: Rig, reports: list[Any]) -> None:
    rig.raw('{"to": "nobody"}')
    rig.raw("not json")
    assert rig.worker.poll_once() == 2
    assert rig.sent() == [] and reports == []
    assert rig.depth() == (0, 2)  # hidden for the backoff; the DLQ takes them in the end


def test_a_failed_send_releases_its_claim_for_the_retry(rig: Rig, reports: list[Any]) -> None:
    rig.job(template="no-such-template")
    rig.worker.poll_once()
    assert rig.sent() == []
    assert rig.claim("welcome-1") == {}  # released: the retry may claim it at once
    assert rig.depth() == (0, 1)


def test_a_failed_report_is_retried_without_a_second_email(rig: Rig, reports: list[Any]) -> None:
    reports.append(RuntimeError("403 from the API server"))
    rig.job()
    rig.worker.poll_once()
    assert len(rig.sent()) == 1
    assert rig.depth() == (0, 1)  # kept for the report's retry
    reports.clear()  # the API server answers again; the redelivery (here: a new copy)
    rig.job()
    rig.worker.poll_once()
    assert len(rig.sent()) == 1
    assert len(reports) == 1


def test_a_key_another_worker_holds_is_deferred(rig: Rig, reports: list[Any]) -> None:
    other = Claims(rig.worker.claims._ddb, rig.worker.settings.email_jobs_table, lease=30)
    assert other.claim("welcome-1").won
    rig.job()
    rig.worker.poll_once()
    assert rig.sent() == [] and reports == []
    assert rig.claim("welcome-1")["state"]["S"] == "sending"
    assert rig.depth() == (0, 1)  # hidden until the other's lease ends


def test_a_stopping_worker_releases_what_it_has_not_started(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        rig.job(key=f"k-{i}", report=False)
    receive = worker_module.queue.receive

    def received_then_stopped(*args: Any, **kwargs: Any) -> list[Any]:
        messages = receive(*args, **kwargs)
        rig.worker.stop.set()  # SIGTERM while the long poll was answered
        return messages

    monkeypatch.setattr(worker_module.queue, "receive", received_then_stopped)
    assert rig.worker.poll_once() == 3
    assert rig.sent() == []
    assert rig.depth() == (3, 0)  # visible again at once, for another worker
    assert rig.worker.poll_once() == 0  # stopped: no further receive


def test_the_loop_receives_again_while_a_batch_still_waits(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first job's send is held until the second job has been received: a worker that
    waited for the end of a batch before its next receive would never receive it (here:
    the send gives up after 10 s and nothing is sent)."""
    second_received = threading.Event()
    receive = worker_module.queue.receive

    def receive_and_tell(*args: Any, **kwargs: Any) -> list[Any]:
        messages = receive(*args, **kwargs)
        if any("welcome-2" in m["Body"] for m in messages):
            second_received.set()
        return messages

    send = rig.worker.sender.send_templated

    def held_send(*args: Any) -> str:
        if not second_received.is_set():
            assert second_received.wait(10), "the next batch was not received meanwhile"
        return str(send(*args))

    monkeypatch.setattr(worker_module.queue, "receive", receive_and_tell)
    monkeypatch.setattr(rig.worker.sender, "send_templated", held_send)
    rig.job(key="welcome-1")
    loop = threading.Thread(target=rig.worker.run, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            if rig.depth() == (0, 1):  # the first is in hand: queue the second
                rig.job(key="welcome-2")
                break
            time.sleep(0.01)
        deadline = time.monotonic() + 20
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rig.worker.stop.set()
        loop.join(30)
    assert len(rig.sent()) == 2 and len(reports) == 2
    assert rig.depth() == (0, 0)  # both deleted when the loop stopped at the latest


def test_the_jobs_of_a_batch_are_handled_at_once(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each status report waits until three are in flight: handled one at a time, the first
    would wait for ever (here: fail after 10 s); together, all three go."""
    barrier = threading.Barrier(3, timeout=10)
    report_one = worker_module.report.delivered

    def delivered(target: Report, message_id: str, sent_at: float) -> bool:
        barrier.wait()
        return bool(report_one(target, message_id, sent_at))

    monkeypatch.setattr(worker_module.report, "delivered", delivered)
    for i in range(3):
        rig.job(key=f"welcome-{i}")
    handled = 0
    deadline = time.monotonic() + 30
    while handled < 3 and time.monotonic() < deadline:
        handled += rig.worker.poll_once()
    assert len(reports) == 3 and len(rig.sent()) == 3
    assert rig.depth() == (0, 0)


def test_two_deliveries_of_a_job_in_one_batch_go_in_turn(rig: Rig, reports: list[Any]) -> None:
    """Handled at once, the second would find the key held and hide for the lease; in turn,
    it finds the job sent and is dropped."""
    rig.job(key="welcome-dup")
    rig.job(key="welcome-dup")
    handled = 0
    deadline = time.monotonic() + 30
    while handled < 2 and time.monotonic() < deadline:
        handled += rig.worker.poll_once()
    assert len(rig.sent()) == 1
    assert rig.depth() == (0, 0)  # both consumed, none hidden for a lease


def test_a_renewal_too_slow_to_cover_a_send_sends_nothing(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's own lease ran short while the job waited (its end set to now here), and
    the renewal before the send came back with less than the send's time of lease left
    (DynamoDB stalling): a send then might outlive the lease and race a takeover."""
    claim, renew = rig.worker.claims.claim, rig.worker.claims.renew

    def waited_long(key: str) -> Any:
        return dataclasses.replace(claim(key), lease_until=time.time())

    def late(key: str, token: str) -> float | None:
        end = renew(key, token)
        return None if end is None else time.time() + rig.worker.send_timeout / 2

    monkeypatch.setattr(rig.worker.claims, "claim", waited_long)
    monkeypatch.setattr(rig.worker.claims, "renew", late)
    rig.job()
    rig.worker.poll_once()
    assert rig.sent() == [] and reports == []
    assert rig.claim("welcome-1") == {}  # given back: nothing went out
    assert rig.depth() == (0, 1)  # backed off, tried again later


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (ReadTimeoutError(endpoint_url="https://email"), True),
        (ConnectionClosedError(endpoint_url="https://email"), True),
        (ConnectTimeoutError(endpoint_url="https://email"), False),
        (EndpointConnectionError(endpoint_url="https://email"), False),
        (
            ClientError(
                {"Error": {"Code": "Throttling"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                "SendTemplatedEmail",
            ),
            False,
        ),
        (
            ClientError(
                {"Error": {"Code": "InternalFailure"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "SendTemplatedEmail",
            ),
            True,
        ),
    ],
)
def test_a_send_may_have_gone_out_only_if_ses_had_the_request(
    error: Exception, unknown: bool
) -> None:
    assert outcome_unknown(error) is unknown  # type: ignore[arg-type]


def test_the_claims_own_end_is_never_taken_for_a_takeover(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat renewing after the `sent` write (or a release) finds the claim no longer
    `sending`: that is the claim's end, not another worker's takeover."""
    settings = rig.worker.settings.model_copy(
        update={"worker_claim_lease": 1.5, "worker_visibility_timeout": 2}
    )
    worker = Worker(settings)  # renews every 0.5 s
    sent = worker.claims.sent
    renewed = threading.Event()
    renew = worker.claims.renew

    def renew_seen(key: str, token: str) -> float | None:
        renewed.set()
        return renew(key, token)

    def slow_sent(key: str, message_id: str, sent_at: float) -> None:
        sent(key, message_id, sent_at)
        renewed.clear()
        renewed.wait(2)  # a slow answer: time for the heartbeat's next renewal, if it runs

    monkeypatch.setattr(worker.claims, "renew", renew_seen)
    monkeypatch.setattr(worker.claims, "sent", slow_sent)
    lost = worker_module.CLAIMS_LOST._value.get()
    rig.job()
    assert worker.poll_once() == 1
    assert len(rig.sent()) == 1
    assert worker_module.CLAIMS_LOST._value.get() == lost
    assert not renewed.is_set()  # the heartbeat had stopped before the claim's end


def test_a_receive_asks_for_no_more_than_threads_are_free(
    rig: Rig, reports: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A received message waiting for a thread has no heartbeat (its visibility could
    lapse): with all threads but one busy, one message is received, not a batch."""
    asked: list[int] = []
    receive = worker_module.queue.receive

    def recording(*args: Any, **kwargs: Any) -> list[Any]:
        asked.append(kwargs["most"])
        return receive(*args, **kwargs)

    monkeypatch.setattr(worker_module.queue, "receive", recording)
    for i in range(3):
        rig.job(key=f"free-{i}")
    busy = rig.worker.settings.worker_concurrency - 1
    rig.worker._in_hand = busy  # as if that many were being handled
    assert rig.worker.poll_once() == 1
    assert asked == [1] and len(reports) == 1
    rig.worker._in_hand -= busy
    assert rig.worker.poll_once() == 2 and asked[-1] == rig.worker.settings.worker_concurrency
