"""`herd worker run --kind thumbnails`: the raw bucket's ObjectCreated events (S3 -> SQS) become
a tenant's logo thumbnails in the processed bucket and `status.logo` on its Tenant.

- What S3 lets in is checked again here, as if the POST policy had not been (moto does not
  enforce it; a policy can be wrong): key `raw/{slug}/{uuid}`, size, content type, then the
  image itself (images.py). A refused upload ends in `LogoRejected=True` with the reason and
  writes nothing to the processed bucket.
- Exactly once per object version: a claim in the jobs table (`thumb#<key>#<version>`, the
  ETag where the event carries no version id, as moto's do; the
  email worker's claims) before the work, `done` after the report. The thumbnails' keys are
  derived from the object version, so a retry after a crash rewrites the same two objects
  with the same bytes, and the status points at them only after both exist.
- Failures back off by visibility and, after the queue's maxReceiveCount, land in the DLQ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge

from herd_api.core.config import Settings
from herd_api.worker import images, logo_report, queue
from herd_api.worker.claims import Claims
from herd_core import aws, kube

log = logging.getLogger("herd.worker.thumbnails")

MADE = Counter("herd_thumbnails_made_total", "Logos made into thumbnails")
REJECTED = Counter("herd_logos_rejected_total", "Uploads refused, by reason", ["reason"])
FAILED = Counter("herd_thumbnail_jobs_failed_total", "Thumbnail jobs to retry")
DLQ_DEPTH = Gauge("herd_thumbnail_dlq_messages", "Messages in the thumbnail dead-letter queue")
RAW_KEY = re.compile(
    r"^raw/([a-z0-9]([-a-z0-9]*[a-z0-9])?)/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
MAX_VISIBILITY = 43200


class Deferred(Exception):
    """Another worker holds this object version; look again when its lease ends."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"held by another worker for {seconds}s")
        self.seconds = seconds


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version: str  # the version id, or the ETag where the event has none (moto)
    etag: str
    slug: str


def uploads(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The S3 event records of one message (none for S3's test event)."""
    if body.get("Event") == "s3:TestEvent":
        return []
    records = body.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 event notification")
    return [r for r in records if str(r.get("eventName", "")).startswith("ObjectCreated")]


def public_url(settings: Settings, bucket: str, key: str) -> str:
    if settings.logo_public_url:
        base = settings.logo_public_url.rstrip("/")
    elif settings.aws_endpoint_url:  # moto: path-style at the endpoint
        base = f"{settings.aws_endpoint_url.rstrip('/')}/{bucket}"
    else:
        base = f"https://{bucket}.s3.{settings.aws_region}.amazonaws.com"
    return f"{base}/{key}"


def thumbnail_key(upload: Upload, size: int) -> str:
    digest = hashlib.sha256(f"{upload.key}#{upload.version}".encode()).hexdigest()[:20]
    return f"logos/{upload.slug}/{digest}/{size}.png"


@dataclass
class ThumbnailWorker:
    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        s = self.settings
        if not (s.thumbnail_queue_url and s.logo_raw_bucket and s.logo_bucket):
            raise ValueError(
                "HERD_THUMBNAIL_QUEUE_URL, HERD_LOGO_RAW_BUCKET and HERD_LOGO_BUCKET must be set"
            )
        self.queue_url: str = s.thumbnail_queue_url
        self.raw_bucket: str = s.logo_raw_bucket
        self.bucket: str = s.logo_bucket
        self.sqs: Any = aws.client("sqs", s)
        self.s3: Any = aws.client("s3", s)
        self.claims = Claims(aws.client("dynamodb", s), s.email_jobs_table, s.worker_claim_lease)
        log.info("thumbnail worker ready: queue %s", self.queue_url.rsplit("/", 1)[-1])

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())

    def run(self) -> None:
        if self.settings.thumbnail_dlq_url:
            queue.watch_depth(
                self.sqs, self.settings.thumbnail_dlq_url, DLQ_DEPTH, self.settings, self.stop
            )
        while not self.stop.is_set():
            self.poll_once()
        log.info("thumbnail worker stopped")

    def poll_once(self) -> int:
        messages = queue.receive(self.sqs, self.queue_url, self.settings, self.stop)
        for i, message in enumerate(messages):
            if self.stop.is_set():
                for m in messages[i:]:  # SIGTERM: give the rest back at once
                    self._hide(m["ReceiptHandle"], 0)
                break
            self._one(message)
        return len(messages)

    def _one(self, message: dict[str, Any]) -> None:
        """The error boundary, as the email worker's: whatever one message's handling
        raises (a queue call included) backs that message off; the worker polls on."""
        try:
            self.handle(message)
        except Exception as err:  # one message never stops the others, nor the worker
            FAILED.inc()
            log.error("thumbnail message %s failed: %s", message.get("MessageId"), err)
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            delay = self.settings.worker_retry_base * 2 ** max(receives - 1, 0)
            self._hide(message["ReceiptHandle"], min(MAX_VISIBILITY, int(delay)))

    def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            for record in uploads(json.loads(message["Body"])):
                self.process(record)
        except Deferred as held:
            self._hide(receipt, min(MAX_VISIBILITY, held.seconds))
            return
        except Exception as err:  # one message never stops the others
            FAILED.inc()
            log.error(
                "thumbnail job %s failed (receive %d): %s", message["MessageId"], receives, err
            )
            delay = self.settings.worker_retry_base * 2 ** max(receives - 1, 0)
            self._hide(receipt, min(MAX_VISIBILITY, int(delay)))
            return
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        except (ClientError, BotoCoreError) as err:
            # The work is done and its claim says so: the message comes back after its
            # visibility and is skipped as done. Nothing to back off, nothing to redo.
            log.warning(
                "deleting message %s failed (it comes back and is skipped): %s",
                message["MessageId"],
                err,
            )

    def process(self, record: dict[str, Any]) -> None:
        s3_part = record.get("s3") or {}
        bucket = str((s3_part.get("bucket") or {}).get("name", ""))
        obj = s3_part.get("object") or {}
        key = unquote_plus(str(obj.get("key", "")))
        match = RAW_KEY.match(key)
        if bucket != self.raw_bucket or not match:
            log.warning("ignoring an object outside raw/{slug}/{uuid}: %s/%s", bucket, key[:200])
            return
        etag = str(obj.get("eTag") or "")
        upload = Upload(bucket, key, str(obj.get("versionId") or etag), f'"{etag}"', match.group(1))
        tenant = kube.get_object(logo_report.TENANTS, self.settings.tenants_namespace, upload.slug)
        if tenant is None:
            log.info("upload %s for a tenant that does not exist; ignored", key)
            return
        job = f"thumb#{bucket}/{key}#{upload.version}"
        claim = self.claims.claim(job)
        if not claim.won:
            if claim.sent_message_id:
                log.info("upload %s (version %s) done before; skipped", key, upload.version)
                return
            raise Deferred(max(1, math.ceil((claim.held_until or time.time()) - time.time()) + 1))
        try:
            outcome = self._thumbnails(upload, tenant)
        except Exception:
            self.claims.release(job, claim.token)
            raise
        # Done: a redelivery (S3 notifies at least once) skips it from here on.
        self.claims.sent(job, outcome, time.time())

    def _thumbnails(self, upload: Upload, tenant: dict[str, Any]) -> str:
        s = self.settings
        try:
            # Exactly the content the event is about: a later upload to the same key (the
            # presigned POST can be reused until it expires) has an event of its own.
            obj = self.s3.get_object(Bucket=upload.bucket, Key=upload.key, IfMatch=upload.etag)
        except ClientError as err:
            code = err.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                log.info("upload %s is gone (expired or deleted); nothing to do", upload.key)
                return "gone"
            if code in ("PreconditionFailed", "412"):
                log.info("upload %s was replaced; its own event makes the logo", upload.key)
                return "superseded"
            raise
        uploaded = obj["LastModified"]
        try:
            if int(obj["ContentLength"]) > s.logo_max_bytes:
                obj["Body"].close()
                raise images.Rejected(
                    "TooLarge",
                    f"{int(obj['ContentLength']):,} bytes; at most {s.logo_max_bytes:,}",
                )
            content_type = str(obj.get("ContentType") or "")
            if content_type.split(";")[0].strip().lower() not in images.FORMATS:
                obj["Body"].close()
                raise images.Rejected(
                    "WrongContentType", f"{content_type or 'no content type'} is not accepted"
                )
            data = obj["Body"].read(s.logo_max_bytes + 1)
            if len(data) > s.logo_max_bytes:
                raise images.Rejected("TooLarge", f"more than {s.logo_max_bytes:,} bytes")
            thumbs = images.thumbnails(data, content_type, s.logo_max_pixels)
        except images.Rejected as refused:
            REJECTED.labels(refused.reason).inc()
            log.warning("upload %s refused: %s (%s)", upload.key, refused.reason, refused.message)
            logo_report.apply(tenant, None, (refused.reason, refused.message))
            return f"rejected:{refused.reason}"
        urls = {}
        for size, png in thumbs.items():
            key = thumbnail_key(upload, size)
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=png,
                ContentType="image/png",
                CacheControl="public, max-age=31536000, immutable",
            )
            urls[size] = public_url(s, self.bucket, key)
        logo = {
            "url64": urls[64],
            "url256": urls[256],
            "updatedAt": logo_report.stamp(
                uploaded if isinstance(uploaded, dt.datetime) else dt.datetime.now(dt.UTC)
            ),
            "sourceVersion": upload.version,
        }
        logo_report.apply(tenant, logo, None)
        MADE.inc()
        log.info("logo of %s: thumbnails of %s", upload.slug, upload.key)
        return "thumbnails"

    def _hide(self, receipt: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as err:
            log.warning("queue call failed (the message comes back on its own): %s", err)
