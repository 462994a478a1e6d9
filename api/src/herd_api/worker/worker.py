"""`herd worker run`: long-polls the email queue and sends SES templated emails.

- Rate: one budget per environment shared by every replica (worker/budget.py), at SES's
  MaxSendRate (GetSendQuota) unless configured.
- Exactly once per idempotency key: a DynamoDB conditional write claims the key first, under
  a lease no longer than the message's visibility; while a worker holds a claim it extends
  both (a heartbeat: the lease in a loop of its own, so a slow queue call never lets it
  lapse). A worker killed after its claim: the lease lapses no later than the
  message shows again, and the next receive sends it. A message whose key another worker
  holds is hidden until that lease ends, instead of burning receives.
- A send is one SES call, never repeated by the client (claims.py, ses.Sender), and starts
  only with half a lease still ahead, which also bounds how long it may take: nobody can
  take the key over while the email is on the way. A send whose answer is late or lost may
  have gone out; it is retried after the backoff and counted, the one duplicate left.
- Failures: an error boundary per message; a failed message's visibility is set to an
  exponential backoff; after the queue's maxReceiveCount SQS moves it to the dead-letter
  queue (its depth is a metric, and the chart alerts on it). A message that does not parse
  is such a poison message too. A failed status report is retried by redelivery: the claim
  then says `sent`, so only the report runs again, never the email. SES's sandbox refusing
  an address (herd_core.sandbox) is no failure to retry: the Tenant says so, once.
- Concurrency: messages are handled up to `worker_concurrency` at once (each mostly waits on
  DynamoDB, SES and the API server), deliveries of one job in turn; the next batch is
  received as soon as fewer than that are in hand, not when the last of a batch ends.
  Claims, the budget and the error boundary are per message, so nothing else changes.
- SIGTERM: the messages in hand are finished; messages received but not started are released.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from herd_api.core.config import Settings
from herd_api.worker import queue, report
from herd_api.worker.budget import SharedBudget
from herd_api.worker.claims import Claims
from herd_core import aws, kube, sandbox
from herd_core.emailjobs import EmailJob, Report, mask_email
from herd_core.ses import SES, Sender, outcome_unknown

log = logging.getLogger("herd.worker")

SENT = Counter("herd_emails_sent_total", "Emails sent through SES")
DUPLICATES = Counter("herd_emails_duplicate_total", "Deliveries skipped: already sent")
FAILED = Counter("herd_emails_failed_total", "Failed email jobs, by reason", ["reason"])
DEFERRED = Counter("herd_emails_deferred_total", "Deliveries hidden until another's lease ends")
UNKNOWN = Counter(
    "herd_emails_unknown_outcome_total",
    "Sends whose answer was late or lost: SES may have sent them, and their retry may not be "
    "the first email",
)
CLAIMS_LOST = Counter(
    "herd_email_claims_lost_total", "Claims another worker took over while this one held them"
)
REPORTS_FAILED = Counter("herd_email_reports_failed_total", "Status reports to retry")
DLQ_DEPTH = Gauge("herd_email_dlq_messages", "Messages in the email dead-letter queue")
MAX_VISIBILITY = 43200  # SQS's limit, seconds
# Seconds a done message may wait for others to be deleted with: well within any visibility.
DELETE_DELAY = 1.0


@dataclass
class _Hold:
    """A claim being held: its heartbeat's loops, and whether it was lost (counted once)."""

    key: str
    every: float
    done: threading.Event = field(default_factory=threading.Event)
    loops: list[threading.Thread] = field(default_factory=list)
    lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def let_go(self, wait: bool = False) -> None:
        """Stop the loops; with `wait`, give a call in flight a third of a lease to end."""
        self.done.set()
        for loop in self.loops if wait else ():
            loop.join(self.every)

    def lose(self) -> None:
        """Found taken over (by the heartbeat or before the send): counted once."""
        with self._lock:
            first, self.lost = not self.lost, True
        if first:
            CLAIMS_LOST.inc()
            log.warning("claim of job %s was taken over", self.key)


@dataclass
class Worker:
    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.settings.email_queue_url:
            raise ValueError("HERD_EMAIL_QUEUE_URL is not set")
        self.queue_url: str = self.settings.email_queue_url
        # Each job thread and each claim's heartbeat may hold a connection at once: a pool
        # of botocore's default 10 discards kept-alive connections under a full batch.
        pool = 2 * self.settings.worker_concurrency + 2
        self.sqs: Any = aws.client("sqs", self.settings, max_pool_connections=pool)
        self.ses = SES(self.settings)
        # Half a lease: the send must be over, answered or not, before the lease can lapse.
        self.send_timeout = self.settings.worker_claim_lease / 2
        self.sender = Sender(self.settings, self.send_timeout)
        ddb = aws.client("dynamodb", self.settings, max_pool_connections=pool)
        table = self.settings.email_jobs_table  # full name, environment prefix included
        self.claims = Claims(ddb, table, self.settings.worker_claim_lease)
        rate = self.settings.worker_max_send_rate or self.ses.max_send_rate()
        self.budget = SharedBudget(ddb, table, self.settings.worker_send_budget_key, rate)
        self._pool = ThreadPoolExecutor(self.settings.worker_concurrency, "email-job")
        self._deletes: list[tuple[str, float]] = []  # (receipt, since when) to delete
        self._deletes_lock = threading.Lock()
        self._room = threading.Condition()  # signalled as messages in hand finish
        self._in_hand = 0  # messages received and not yet handled
        log.info(
            "worker ready: queue %s, %.3g emails/s shared by all workers",
            self.queue_url.rsplit("/", 1)[-1],
            rate,
        )

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())

    def run(self) -> None:
        if self.settings.email_dlq_url:
            queue.watch_depth(
                self.sqs, self.settings.email_dlq_url, DLQ_DEPTH, self.settings, self.stop
            )
        try:
            while not self.stop.is_set():
                self.poll_once(wait=False)
        finally:
            self._pool.shutdown(wait=True)  # what is in hand ends (started) or is released
            self._flush_deletes(everything=True)
        log.info("worker stopped")

    def poll_once(self, wait: bool = True) -> int:
        """Receive a batch and hand it to the job threads; with `wait`, until it is handled.

        The loop (`run`) receives again, as many as threads are free, as soon as fewer than
        `worker_concurrency` messages are in hand, not when the last of the batch ends: a
        batch's sends are spread over the budget (10 at 50/s: 0.2 s), and waiting for the
        last one, and its report, held the worker to ~29 of a configured 50 emails/s."""
        with self._room:
            while self._in_hand >= self.settings.worker_concurrency and not self.stop.is_set():
                self._room.wait(0.5)
            room = self.settings.worker_concurrency - self._in_hand
        if self.stop.is_set():
            return 0
        # No more than threads are free for: a message waiting for a thread has no heartbeat
        # (its visibility could lapse) and would hold a send time it cannot use yet.
        messages = queue.receive(
            self.sqs, self.queue_url, self.settings, self.stop, most=max(1, room)
        )
        # Deliveries of one job in a batch go in turn, so the later one finds the job sent
        # (and is dropped) rather than held by the earlier one (and hidden for its lease).
        turns: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            turns.setdefault(_job_key(message), []).append(message)
        self.budget.expect(len(messages))  # send times for the batch in as few turns as may be
        with self._room:
            self._in_hand += len(messages)
        handled = [self._pool.submit(self._in_turn, batch) for batch in turns.values()]
        if wait:
            for future in handled:
                future.result()
        return len(messages)

    def _in_turn(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            try:
                self._one(message)
            finally:
                self.budget.settle()  # no longer waiting for a send time, sent or not
                with self._room:
                    self._in_hand -= 1
                    idle = self._in_hand == 0
                    self._room.notify()
                if idle:  # nothing in hand: no later delete will carry these along
                    self._flush_deletes(everything=True)

    def _one(self, message: dict[str, Any]) -> None:
        if self.stop.is_set():
            self._release([message])  # SIGTERM: not started, given back at once
            return
        try:
            self.handle(message)
        except Exception as err:  # one message never stops the others
            FAILED.labels("error").inc()
            log.error("job in message %s failed: %s", message.get("MessageId"), err)
            self._quietly(self._retry_later, message["ReceiptHandle"], _receives(message))

    def handle(self, message: dict[str, Any]) -> None:
        receipt, receives = message["ReceiptHandle"], _receives(message)
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
                sent_at = claim.sent_at or time.time()
                if job.report and not self._report(job.report, claim.sent_message_id, sent_at):
                    self._retry_later(receipt, receives)
                    return
                self._delete(receipt)
            else:
                # Another worker holds the key: look again when its lease ends.
                DEFERRED.inc()
                wait = (claim.held_until or time.time()) - time.time()
                self._hide(receipt, min(MAX_VISIBILITY, max(1, math.ceil(wait) + 1)))
            return
        with self._holding(receipt, job.idempotency_key, claim.token) as hold:
            stamp = self.budget.take(self.stop)
            if stamp is None:  # stopping while waiting for the budget
                hold.let_go(wait=True)  # no hide of the heartbeat's after the give-back
                self.claims.release(job.idempotency_key, claim.token)
                self._hide(receipt, 0)
                return
            data = self._with_logo(job)  # an API-server read: before the lease is reckoned
            # Renewed first only if the claim's own lease is too short by now: while it runs
            # nobody can take the key over (a takeover needs it lapsed), so a renewal would
            # tell nothing new (and cost a DynamoDB write per email).
            lease_end: float | None = claim.lease_until
            if claim.lease_until - time.time() < self.send_timeout:
                lease_end = self.claims.renew(job.idempotency_key, claim.token)
            if lease_end is None or hold.lost:
                # Lost while we waited (a pause longer than the lease): whoever took the key
                # over sends it; sending here too would be the duplicate.
                hold.lose()
                self._retry_later(receipt, receives)
                return
            if lease_end - time.time() < self.send_timeout:
                # The renewal itself took so long that a send might outlive the lease.
                DEFERRED.inc()
                log.warning("DynamoDB too slow to send job %s under its lease", job.idempotency_key)
                hold.let_go()
                self.claims.release(job.idempotency_key, claim.token)
                self._retry_later(receipt, receives)
                return
            try:
                message_id = self.sender.send_templated(
                    self.settings.email_sender, job.to, job.template, data
                )
            except (ClientError, BotoCoreError) as err:
                if sandbox.refused(err):  # no retry mends it: the Tenant says why, once
                    FAILED.labels("sandbox").inc()
                    log.warning(
                        "SES sandbox refused job %s to %s", job.idempotency_key, mask_email(job.to)
                    )
                    hold.let_go()
                    self.claims.release(job.idempotency_key, claim.token)
                    if job.report and not self._report(job.report, "", stamp, refused=job.to):
                        self._retry_later(receipt, receives)  # the report only: SES refuses again
                        return
                    self._delete(receipt)
                    return
                FAILED.labels("ses").inc()
                unknown = outcome_unknown(err)
                if unknown:
                    UNKNOWN.inc()
                log.warning(
                    "send of job %s to %s failed (receive %d)%s: %s",
                    job.idempotency_key,
                    mask_email(job.to),
                    receives,
                    "; SES may have sent it, and its retry may be a second email"
                    if unknown
                    else "",
                    err,
                )
                hold.let_go()
                self.claims.release(job.idempotency_key, claim.token)
                self._retry_later(receipt, receives)
                return
            # SES took it: from here on nothing may release the claim (a retry would send
            # again). The `sent` record is retried by boto (throttling); still failing, the
            # claim lapses with its lease and the error boundary backs the message off.
            hold.let_go()
            self.claims.sent(job.idempotency_key, message_id, stamp)
        SENT.inc()
        log.info(
            "sent job %s (template %s) to %s", job.idempotency_key, job.template, mask_email(job.to)
        )
        if job.report and not self._report(job.report, message_id, stamp):
            self._retry_later(receipt, receives)  # redelivery reports; the claim says sent
            return
        self._delete(receipt)

    def _with_logo(self, job: EmailJob) -> dict[str, Any]:
        """The job's data plus `logoURL`: the Tenant's 256 px logo if it has one by now, else
        empty. Read at send time and never waited for: an email is never held back."""
        data = {**job.data, "logoURL": ""}
        if job.report is None:
            return data
        try:
            tenant = kube.get_object(report.TENANTS, job.report.namespace, job.report.name)
        except Exception as err:  # the logo is a nicety; the email goes without it
            log.warning("no logo for job %s: %s", job.idempotency_key, err)
            return data
        if tenant and tenant["metadata"].get("uid") == job.report.uid:
            data["logoURL"] = str(
                ((tenant.get("status") or {}).get("logo") or {}).get("url256", "")
            )
        return data

    def _report(self, target: Report, message_id: str, sent_at: float, refused: str = "") -> bool:
        """True when reported (or nothing to report to any more); False: retry later.
        `refused`: the address SES refused in its sandbox, reported instead of a delivery."""
        try:
            if refused:
                report.refused(target, refused, sent_at)
            else:
                report.delivered(target, message_id, sent_at)
        except Exception as err:  # 403/5xx/network: only the report is retried
            REPORTS_FAILED.inc()
            log.warning("status report for %s/%s failed: %s", target.namespace, target.name, err)
            return False
        return True

    @contextmanager
    def _holding(self, receipt: str, key: str, token: str) -> Iterator[_Hold]:
        """While we hold the claim: keep the lease alive and the message hidden.

        Two loops, each due a third of a lease after its last call began: a hanging queue
        call must not hold up the lease. `let_go` stops both; call it before a write that
        ends the claim (`sent`, a release), whose effect a renewal would take for a
        takeover. A call in flight then does no harm (a renewal is conditional on the claim
        still `sending` under our token, and a hide only delays a message that is deleted or
        backed off); only a give-back at once waits for it."""
        every = max(0.5, min(self.settings.worker_visibility_timeout, self.claims.lease) / 3)
        hold = _Hold(key, every)

        def renew() -> bool:
            if self.claims.renew(key, token) is None and not hold.done.is_set():
                hold.lose()
                return False  # the key is the new holder's now
            return True

        def hide() -> bool:
            self._hide(receipt, self.settings.worker_visibility_timeout)
            return True

        def keep(call: Callable[[], bool], what: str) -> None:
            due = time.monotonic() + every
            while not hold.done.wait(max(0.0, due - time.monotonic())):
                began = time.monotonic()
                try:
                    if not call():
                        return
                    due = began + every
                except Exception as err:  # tried again soon, well within the lease
                    if not hold.done.is_set():
                        log.warning("%s of job %s failed: %s", what, key, err)
                    due = time.monotonic() + min(1.0, every)

        for call, what in ((renew, "lease renewal"), (hide, "visibility extension")):
            loop = threading.Thread(target=keep, args=(call, what), daemon=True, name=what)
            hold.loops.append(loop)
            loop.start()
        try:
            yield hold
        finally:
            hold.let_go()

    def _delete(self, receipt: str) -> None:
        """Deleted with others in one DeleteMessageBatch: by the batch's end, or once ten wait
        or the first has waited DELETE_DELAY. Only ever after the job is done (its claim says
        sent, or it is dropped): a delete lost to a crash costs a redelivery, found sent and
        deleted then, never a second email."""
        with self._deletes_lock:
            self._deletes.append((receipt, time.monotonic()))
            due = len(self._deletes) >= 10 or (
                time.monotonic() - self._deletes[0][1] > DELETE_DELAY
            )
        if due:
            self._flush_deletes()

    def _flush_deletes(self, everything: bool = False) -> None:
        while True:
            with self._deletes_lock:
                batch, self._deletes = self._deletes[:10], self._deletes[10:]
            if not batch:
                return
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, (r, _) in enumerate(batch)]
            try:
                answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = answer.get("Failed") or []
            except (ClientError, BotoCoreError) as err:
                failed = entries
                log.warning(
                    "deleting %d messages failed (they come back, found sent): %s", len(batch), err
                )
            if failed:
                log.warning("%d messages not deleted (they come back, found sent)", len(failed))
            if not everything:
                return

    def _hide(self, receipt: str, seconds: int) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )

    def _retry_later(self, receipt: str, receives: int) -> None:
        delay = self.settings.worker_retry_base * 2 ** max(receives - 1, 0)
        self._hide(receipt, min(MAX_VISIBILITY, int(delay)))

    def _release(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            self._quietly(self._hide, m["ReceiptHandle"], 0)

    @staticmethod
    def _quietly(fn: Callable[[str, int], None], receipt: str, value: int) -> None:
        """For clean-up calls whose failure only means SQS redelivers a bit later (a stale
        receipt handle, say)."""
        try:
            fn(receipt, value)
        except (ClientError, BotoCoreError) as err:
            log.warning("queue call failed (the message comes back on its own): %s", err)


def _job_key(message: dict[str, Any]) -> str:
    """The job's idempotency key; the message's own id when the body is no job."""
    try:
        return str(json.loads(message["Body"])["idempotencyKey"])
    except (ValueError, KeyError, TypeError):
        return str(message["MessageId"])


def _receives(message: dict[str, Any]) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
