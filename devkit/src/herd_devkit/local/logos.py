"""The logo pipeline's AWS side, part of `herd aws bootstrap`: a raw bucket that presigned
POSTs upload into, a processed bucket for the thumbnails (served through CloudFront in prod:
docs/eks.md), and the raw bucket's ObjectCreated notification into a queue (with its DLQ)
that the thumbnail worker reads. Both buckets private, versioned and encrypted; raw uploads
expire (the thumbnails are what is kept)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from herd_core import aws
from herd_devkit.settings import Settings

RAW_EXPIRY_DAYS = 7  # an upload the worker never got to is gone after a week
MAX_RECEIVES = 5


def buckets(settings: Settings, prefix: str) -> dict[str, str]:
    """Bucket names are global: they carry the account id as well as the prefix."""
    account = aws.client("sts", settings).get_caller_identity()["Account"]
    raw, processed = f"{prefix}herd-{account}-logos-raw", f"{prefix}herd-{account}-logos"
    s3: Any = aws.client("s3", settings)
    for name in (raw, processed):
        _bucket(s3, settings.aws_region, name)
    s3.put_bucket_lifecycle_configuration(
        Bucket=raw,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-raw-uploads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "raw/"},
                    "Expiration": {"Days": RAW_EXPIRY_DAYS},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    # Browsers POST straight to the raw bucket from the signup and admin pages; the POST
    # policy, not the origin, is what guards the bucket.
    s3.put_bucket_cors(
        Bucket=raw,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedMethods": ["POST"],
                    "AllowedOrigins": ["*"],
                    "AllowedHeaders": ["*"],
                    "MaxAgeSeconds": 3000,
                }
            ]
        },
    )
    queue_url, dlq_url, queue_arn = _queue(settings, f"{prefix}herd-thumbnails", raw)
    s3.put_bucket_notification_configuration(
        Bucket=raw,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "thumbnails",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}},
                }
            ]
        },
    )
    return {
        "logo_raw_bucket": raw,
        "logo_bucket": processed,
        "thumbnail_queue_url": queue_url,
        "thumbnail_dlq_url": dlq_url,
    }


def _bucket(s3: Any, region: str, name: str) -> None:
    try:
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou",):
            raise
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _queue(settings: Settings, name: str, bucket: str) -> tuple[str, str, str]:
    sqs: Any = aws.client("sqs", settings)
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # Only this bucket's notifications may be sent to the queue.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": "60",
            "Policy": json.dumps(policy),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
            ),
        },
    )
    return str(queue_url), str(dlq_url), str(arn)
