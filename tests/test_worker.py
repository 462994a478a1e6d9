"""The worker process on its own: SIGTERM finishes the message in hand and releases the rest."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from herd_core import aws
from herd_core.constants import GROUP
from herd_core.emailjobs import EmailJob, Report, enqueue
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings

from .conftest import Cluster
from .faultproxy import FaultProxy
from .helpers import Custom, WorkerProcess, wait_for


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
        env={
            **env,
            "HERD_EMAIL_QUEUE_URL": queue,
            "HERD_WORKER_MAX_SEND_RATE": "0.05",
            "HERD_WORKER_SEND_BUDGET_KEY": f"budget#sigterm-{marker}",
        },
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


# -- faults: kills, throttling, held claims, a refused status report ---------------------
def own_setup(aws_settings: Settings, prefix: str) -> tuple[Any, str, str, str]:
    """A queue and a template of the test's own: (sqs, queue URL, template, marker)."""
    sqs = aws.client("sqs", aws_settings)
    marker = uuid.uuid4().hex[:8]
    queue = sqs.create_queue(QueueName=f"{prefix}-{marker}")["QueueUrl"]
    template = f"{prefix}-{marker}"
    aws.client("ses", aws_settings).create_template(
        Template={"TemplateName": template, "SubjectPart": "Hi", "TextPart": "Hello"}
    )
    return sqs, queue, template, marker


def job(template: str, marker: str, i: int = 0, report: Report | None = None) -> EmailJob:
    return EmailJob(
        idempotency_key=f"{template}-{i}",
        template=template,
        to=f"t{i}-{marker}@example.com",
        data={},
        report=report,
    )


def sent_to(moto: MotoServer, marker: str) -> int:
    return sum(
        1
        for m in moto.data()["ses"]["TemplateMessage"]
        if marker in m["destinations"]["ToAddresses"][0]
    )


def private_env(worker_env: dict[str, str], queue: str, **extra: str) -> dict[str, str]:
    # Own queue, outside the worker policy's resources: it keeps no AWS call log. Own
    # budget item too, so the session worker's sends do not slow this one.
    env = {k: v for k, v in worker_env.items() if k != "HERD_AWS_CALL_LOG"}
    return {
        **env,
        "HERD_EMAIL_QUEUE_URL": queue,
        "HERD_WORKER_SEND_BUDGET_KEY": f"budget#{queue.rsplit('/', 1)[-1]}",
        "HERD_WORKER_MAX_SEND_RATE": "20",
        **extra,
    }


def proxied_worker(
    env: dict[str, str], proxy: FaultProxy, tmp: pytest.TempPathFactory, name: str
) -> WorkerProcess:
    """A worker whose AWS calls go through the fault proxy."""
    return WorkerProcess(
        env={**env, "AWS_ENDPOINT_URL": proxy.url}, log=tmp.mktemp(name) / "worker.log"
    ).start()


def metric(worker: WorkerProcess, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{worker.health_port}/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


@pytest.mark.slow
def test_a_worker_killed_right_after_its_claim_costs_one_lease_not_the_email(
    worker_env: dict[str, str],
    moto: MotoServer,
    proxy: FaultProxy,
    aws_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sqs, queue, template, marker = own_setup(aws_settings, "kill")
    lease = 6
    env = private_env(
        worker_env,
        queue,
        HERD_WORKER_VISIBILITY_TIMEOUT=str(lease),
        HERD_WORKER_CLAIM_LEASE=str(lease),
    )
    doomed = proxied_worker(env, proxy, tmp_path_factory, "worker-doomed")
    one = job(template, marker)
    killed = proxy.after("PutItem", doomed.kill, contains=one.idempotency_key)
    try:
        enqueue(sqs, queue, one)
        wait_for(lambda: killed.hits == 1 and not doomed.running(), 30, "killed after its claim")
    finally:
        proxy.clear()
    killed_at = time.monotonic()
    assert sent_to(moto, marker) == 0
    survivor = WorkerProcess(
        env=env, log=tmp_path_factory.mktemp("worker-survivor") / "worker.log"
    ).start()
    try:
        # The message shows again after its visibility; the dead claim lapsed no later.
        wait_for(lambda: sent_to(moto, marker) == 1, lease + 10, "sent by the survivor")
        assert time.monotonic() - killed_at < lease + 10
        wait_for(lambda: queue_depth(sqs, queue) == (0, 0), 30, "queue drained")
        assert sent_to(moto, marker) == 1
    finally:
        survivor.stop()


@pytest.mark.slow
def test_a_send_answered_late_is_not_repeated_at_once(
    worker_env: dict[str, str],
    moto: MotoServer,
    proxy: FaultProxy,
    aws_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SES takes the email but answers after the send's time (half the lease). A client
    retry (standard mode retries read timeouts) would be a second email at once; the worker
    makes one attempt, counts the outcome unknown and backs the message off."""
    sqs, queue, template, marker = own_setup(aws_settings, "late")
    lease = 4  # a send may take 2 s
    # A slow server, not a wait of the test's: every send to this test's address answers late.
    late = proxy.after("SendTemplatedEmail", lambda: time.sleep(lease), times=10, contains=marker)
    env = private_env(
        worker_env,
        queue,
        HERD_AWS_MAX_ATTEMPTS="5",  # production's: the retries this test is about
        HERD_WORKER_VISIBILITY_TIMEOUT=str(lease),
        HERD_WORKER_CLAIM_LEASE=str(lease),
        HERD_WORKER_RETRY_BASE="600",
    )
    worker = proxied_worker(env, proxy, tmp_path_factory, "worker-late")
    try:
        enqueue(sqs, queue, job(template, marker))
        wait_for(lambda: metric(worker, "herd_emails_unknown_outcome_total") == 1, 60, "unknown")
        assert late.hits == 1  # one attempt
        assert sent_to(moto, marker) == 1  # SES did take it
        assert "may have sent it" in worker.log_text()
        wait_for(lambda: queue_depth(sqs, queue) == (0, 1), 10, "backed off")
    finally:
        proxy.clear()
        worker.stop()


@pytest.mark.slow
def test_a_hanging_queue_call_never_lets_a_held_claim_lapse(
    worker_env: dict[str, str],
    moto: MotoServer,
    proxy: FaultProxy,
    aws_settings: Settings,
    aws_env: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The second job waits ~10 s for the send budget while holding its claim, under a
    4 s lease; every visibility extension hangs for two leases. A heartbeat that renews
    after its hide would let the lease lapse, for another worker to take over."""
    sqs, queue, template, marker = own_setup(aws_settings, "beat")
    lease = 4
    first, second = job(template, marker, 0), job(template, marker, 1)
    proxy.after(
        "ChangeMessageVisibility", lambda: time.sleep(2 * lease), times=1000, contains=marker
    )
    env = private_env(
        worker_env,
        queue,
        HERD_WORKER_VISIBILITY_TIMEOUT=str(lease),
        HERD_WORKER_CLAIM_LEASE=str(lease),
        HERD_WORKER_MAX_SEND_RATE="0.1",  # one email every 10 s
    )
    worker = proxied_worker(env, proxy, tmp_path_factory, "worker-beat")
    ddb = aws.client("dynamodb", aws_settings)

    def lapsed() -> bool:
        """Is the second job's claim held with its lease over? (False once sent.)"""
        item = ddb.get_item(
            TableName=aws_env.email_jobs_table,
            Key={"key": {"S": second.idempotency_key}},
            ConsistentRead=True,
        ).get("Item", {})
        held = item.get("state", {}).get("S") == "sending"
        return held and float(item["leaseUntil"]["N"]) < time.time()

    try:
        enqueue(sqs, queue, first)
        enqueue(sqs, queue, second)
        lapses = 0
        deadline = time.monotonic() + 60
        while sent_to(moto, marker) < 2 and time.monotonic() < deadline:
            lapses += lapsed()
        assert sent_to(moto, marker) == 2
        assert lapses == 0
        assert metric(worker, "herd_email_claims_lost_total") == 0
    finally:
        proxy.clear()
        worker.stop()


@pytest.mark.slow
def test_a_failing_message_never_stops_the_others(
    worker_env: dict[str, str],
    moto: MotoServer,
    proxy: FaultProxy,
    aws_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sqs, queue, template, marker = own_setup(aws_settings, "boundary")
    first, second = job(template, marker, 0), job(template, marker, 1)
    # DynamoDB throttles the first claim (the worker makes one attempt per call here).
    throttled = proxy.fail("PutItem", times=1, fault="throttle", contains=first.idempotency_key)
    worker = proxied_worker(
        private_env(worker_env, queue), proxy, tmp_path_factory, "worker-boundary"
    )
    try:
        enqueue(sqs, queue, first)
        enqueue(sqs, queue, second)
        wait_for(lambda: sent_to(moto, marker) == 2, 60, "both sent")
        assert throttled.hits == 1
        assert worker.running()
        assert "failed" in worker.log_text()
        wait_for(lambda: queue_depth(sqs, queue) == (0, 0), 30, "queue drained")
    finally:
        proxy.clear()
        worker.stop()


@pytest.mark.slow
def test_a_key_held_elsewhere_waits_for_the_lease_instead_of_burning_receives(
    worker_env: dict[str, str],
    moto: MotoServer,
    aws_settings: Settings,
    aws_env: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sqs, queue, template, marker = own_setup(aws_settings, "held")
    held = job(template, marker)
    until = time.time() + 8
    aws.client("dynamodb", aws_settings).put_item(
        TableName=aws_env.email_jobs_table,
        Item={
            "key": {"S": held.idempotency_key},
            "state": {"S": "sending"},
            "owner": {"S": "another-worker"},
            "claimedAt": {"N": f"{time.time():.3f}"},
            "leaseUntil": {"N": f"{until:.3f}"},
        },
    )
    worker = WorkerProcess(
        env=private_env(worker_env, queue),
        log=tmp_path_factory.mktemp("worker-held") / "worker.log",
    ).start()
    try:
        enqueue(sqs, queue, held)
        wait_for(lambda: metric(worker, "herd_emails_deferred_total") >= 1, 30, "deferred")
        wait_for(lambda: sent_to(moto, marker) == 1, 30, "sent once the lease ended")
        assert time.time() >= until
        # Hidden until the lease's end, not retried every backoff step meanwhile.
        assert metric(worker, "herd_emails_deferred_total") == 1
    finally:
        worker.stop()


@pytest.mark.slow
def test_a_refused_status_report_is_retried_and_the_email_is_sent_once(
    worker_env: dict[str, str],
    moto: MotoServer,
    aws_settings: Settings,
    api: ApiClient,
    crds: None,
    objects: Custom,
    cluster: Cluster,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The worker's own ServiceAccount may not write Tenant status at first (403)."""
    sqs, queue, template, marker = own_setup(aws_settings, "report")
    ns = objects.namespace
    tenant = objects.create(
        "Tenant",
        "tenants",
        f"rep-{marker}",
        {
            "displayName": "Report Co",
            "slug": f"rep-{marker}",
            "adminEmail": f"t0-{marker}@example.com",
            "plan": "starter",
        },
    )
    rbac = client.RbacAuthorizationV1Api(api)
    client.CoreV1Api(api).create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="mailer"))
    )
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(
            "mailer",
            ns,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
        )
        .status.token
    )
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "mailer", "user": {"token": token}}]
    kubeconfig["contexts"][0]["context"]["user"] = "mailer"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    worker = WorkerProcess(
        env={**private_env(worker_env, queue), "KUBECONFIG": str(tmp_path / "kubeconfig")},
        log=tmp_path_factory.mktemp("worker-report") / "worker.log",
    ).start()
    try:
        meta = tenant["metadata"]
        enqueue(
            sqs,
            queue,
            job(template, marker, report=Report(namespace=ns, name=meta["name"], uid=meta["uid"])),
        )
        wait_for(lambda: metric(worker, "herd_email_reports_failed_total") >= 1, 30, "403")
        assert sent_to(moto, marker) == 1
        # What the worker needs, and no more: patch on tenants/status.
        rbac.create_namespaced_role(
            ns,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="mailer"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[GROUP],
                        resources=["tenants/status"],
                        verbs=["patch"],
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="mailer"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="mailer"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="mailer", namespace=ns)],
            ),
        )
        cond = objects.wait_condition("tenants", meta["name"], "WelcomeEmailSent", timeout=60)
        assert cond["reason"] == "Sent"
        status = objects.get("tenants", meta["name"])["status"]
        assert set(status["welcomeEmail"]) >= {"messageId", "sentAt"}
        wait_for(lambda: queue_depth(sqs, queue) == (0, 0), 30, "queue drained")
        assert sent_to(moto, marker) == 1
        # One writer: these fields are the worker's, under its own field manager.
        managers = {
            m["manager"]: m
            for m in objects.get("tenants", meta["name"])["metadata"]["managedFields"]
            if m.get("subresource") == "status"
        }
        assert "herd-worker" in managers
        assert "f:messageId" in str(managers["herd-worker"]["fieldsV1"])
    finally:
        worker.stop()


def test_the_dead_letter_queue_depth_is_a_metric(
    worker: WorkerProcess, aws_settings: Settings, aws_env: Any
) -> None:
    aws.client("sqs", aws_settings).send_message(
        QueueUrl=aws_env.email_dlq_url, MessageBody="dead letter"
    )
    wait_for(lambda: metric(worker, "herd_email_dlq_messages") >= 1, 30, "DLQ depth metric")


@pytest.mark.slow
def test_workers_share_one_send_budget(
    worker_env: dict[str, str],
    moto: MotoServer,
    aws_settings: Settings,
    aws_env: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two replicas at a configured 2/s send 2/s together, not 2/s each (bench/sesrate.py
    measures three at 10/s)."""
    sqs, queue, template, marker = own_setup(aws_settings, "budget")
    jobs = [job(template, marker, i) for i in range(8)]
    # One message per receive, so both replicas get some while the budget paces them.
    env = private_env(worker_env, queue, HERD_WORKER_MAX_SEND_RATE="2", HERD_WORKER_BATCH_SIZE="1")
    workers = [
        WorkerProcess(env=env, log=tmp_path_factory.mktemp(f"worker-budget{i}") / "worker.log")
        for i in range(2)
    ]
    try:
        for w in workers:
            w.start()
        for one in jobs:
            enqueue(sqs, queue, one)
        wait_for(lambda: sent_to(moto, marker) == len(jobs), 60, "all sent")
    finally:
        for w in workers:
            w.stop()
    ddb = aws.client("dynamodb", aws_settings)
    stamps = sorted(
        float(
            ddb.get_item(TableName=aws_env.email_jobs_table, Key={"key": {"S": j.idempotency_key}})[
                "Item"
            ]["sentAt"]["N"]
        )
        for j in jobs
    )
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert busiest <= 2, stamps
    assert all("sent job" in w.log_text() for w in workers), "both replicas took part"


def test_a_slow_dynamodb_still_gets_the_budgets_rate(
    aws_env: Any, aws_settings: Settings, proxy: FaultProxy
) -> None:
    """The budget's conditional write taking 0.8 s (more than the grace a reserved time may
    wait, past the half window a turn reserves): the times it hands out start when the
    write lands, so 8 threads waiting on it keep sending; before, every batch of times was
    past its grace on arrival, dropped, and the next the same (nothing sent at all)."""
    from herd_api.worker.budget import SharedBudget

    key = f"budget#slow-{uuid.uuid4().hex[:8]}"
    settings = aws_settings.model_copy(update={"aws_endpoint_url": proxy.url})
    ddb = aws.client("dynamodb", settings, max_pool_connections=20)
    stop = threading.Event()
    proxy.after("PutItem", lambda: stop.wait(0.8), times=10_000, contains=key)
    budget = SharedBudget(ddb, aws_env.email_jobs_table, key, rate=10)
    sent: list[float] = []
    guard = threading.Lock()

    def sender() -> None:
        while not stop.is_set():
            stamp = budget.take(stop)
            if stamp is not None:
                with guard:
                    # The recorded send time, which the budget bounds (a thread woken late on
                    # a busy machine would otherwise count its send in the next second).
                    sent.append(stamp)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(sent) >= 30, 30, "30 sends")
    finally:
        stop.set()
        proxy.clear()
        for t in threads:
            t.join(10)
    # Never faster than the rate either: at most 10 recorded in any second (the item keeps
    # times to the microsecond).
    sent.sort()
    assert max(sum(1 for s in sent if t <= s < t + 1 - 1e-5) for t in sent) <= 10
