"""Logo uploads: a presigned POST into the raw bucket whose policy says everything AWS must
enforce — the one key, the content type, the size range and the expiry. Nothing reaches our
servers: the browser posts the file to S3, S3 tells the thumbnail worker."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from herd_api.core.config import Settings
from herd_core import aws

CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")


def raw_key(slug: str) -> str:
    return f"raw/{slug}/{uuid.uuid4()}"


def conditions(bucket: str, key: str, content_type: str, max_bytes: int) -> list[Any]:
    """The POST policy's conditions: exact bucket, key and content type, 1..max_bytes."""
    return [
        {"bucket": bucket},
        ["eq", "$key", key],
        ["eq", "$Content-Type", content_type],
        ["content-length-range", 1, max_bytes],
    ]


@dataclass(frozen=True)
class Presigned:
    url: str
    fields: dict[str, str]
    key: str
    expires_at: str


def presign(settings: Settings, slug: str, content_type: str) -> Presigned:
    if content_type not in CONTENT_TYPES:  # the route's schema refuses it first
        raise ValueError(f"content type {content_type} is not accepted")
    if not settings.logo_raw_bucket:
        raise RuntimeError("HERD_LOGO_RAW_BUCKET is not set")
    bucket, key = settings.logo_raw_bucket, raw_key(slug)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.logo_upload_expiry)
    # Signing is local (no AWS call; botocore only builds a CreateBucket request to find the
    # endpoint, hence no call log on this client). The upload is a PutObject as us.
    signer = aws.client("s3", settings.model_copy(update={"aws_call_log": None}))
    post = signer.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=conditions(bucket, key, content_type, settings.logo_max_bytes),
        ExpiresIn=settings.logo_upload_expiry,
    )
    aws.record_presigned(settings, "s3", "PutObject", Bucket=bucket, Key=key)
    return Presigned(
        url=str(post["url"]),
        fields={k: str(v) for k, v in post["fields"].items()},
        key=key,
        expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
