"""The logo pipeline end to end through real parts: a presigned POST into moto's raw bucket,
S3's notification into SQS, the thumbnail worker as a real process (under the workers'
ServiceAccount), thumbnails in the processed bucket, `status.logo` on the Tenant, alongside
the operator's own status. And what must never become a logo."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient
from PIL import Image

from herd_core import aws
from herd_devkit.local import bootstrap
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.settings import Settings, get_settings

from . import logo_files
from .conftest import AWS_CALLS, TENANTS
from .faultproxy import FaultProxy
from .helpers import ApiProcess, Custom, HerdProcess, WorkerProcess, wait_for
from .openremote_stub import OpenRemoteStub

pytestmark = [pytest.mark.usefixtures("live_operator"), pytest.mark.slow]


@dataclass
class ThumbnailProcess(HerdProcess):
    args: tuple[str, ...] = ("worker", "run", "--kind", "thumbnails")
    port_variable: str = "HERD_WORKER_PORT"


@pytest.fixture(scope="module")
def thumbnails(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThumbnailProcess]:
    env = {
        **worker_env,
        "HERD_TENANTS_NAMESPACE": TENANTS,
        "HERD_AWS_CALL_LOG": str(AWS_CALLS / "thumbnails.jsonl"),
    }
    proc = ThumbnailProcess(env=env, log=tmp_path_factory.mktemp("thumbs") / "thumbnails.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    return aws.client("s3", moto.settings(get_settings(), aws_max_attempts=1))


@pytest.fixture(scope="module")
def admin_auth(api_server: ApiProcess, users: dict[str, tuple[str, str]]) -> dict[str, str]:
    who = users["admin"]
    answer = httpx.post(
        f"{api_server.url}/v1/auth/token",
        json={"username": who[0], "password": who[1]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['idToken']}"}


def signed_up(api_server: ApiProcess, api: ApiClient, ready: bool = True) -> str:
    slug = f"pic-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(
        f"{api_server.url}/v1/signups",
        json={
            "displayName": "Pictured Farms",
            "slug": slug,
            "adminEmail": f"owner@{slug}.example.com",
            "plan": "starter",
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    if ready:
        Custom(api, TENANTS).wait_condition("tenants", slug, timeout=120)
    return slug


def upload(
    api_server: ApiProcess,
    auth: dict[str, str],
    slug: str,
    data: bytes,
    content_type: str = "image/png",
    sent_type: str | None = None,
) -> str:
    """Ask for a presigned POST and post `data` with it; `sent_type` overrides the form's
    Content-Type (S3 would refuse that by the policy; moto does not)."""
    asked = httpx.post(
        f"{api_server.url}/v1/tenants/{slug}/logo-uploads",
        json={"contentType": content_type},
        headers=auth,
        timeout=30,
    )
    assert asked.status_code == 201, asked.text
    post = asked.json()
    fields = {**post["fields"], **({"Content-Type": sent_type} if sent_type else {})}
    sent = httpx.post(
        post["url"],
        data=fields,
        files={"file": ("logo", data, sent_type or content_type)},
        timeout=60,
    )
    assert sent.status_code in (200, 201, 204), sent.text
    return str(post["key"])


def processed(s3: Any, bucket: str, slug: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket, Prefix=f"logos/{slug}/")
    return sorted(o["Key"] for o in found.get("Contents", []))


def claim(settings: Settings, table: str, bucket: str, key: str, s3: Any) -> dict[str, Any]:
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    item = aws.client("dynamodb", settings).get_item(
        TableName=table, Key={"key": {"S": f"thumb#{bucket}/{key}#{etag}"}}, ConsistentRead=True
    )
    return dict(item.get("Item", {}))


def test_an_upload_becomes_two_thumbnails_and_the_tenants_logo_once(
    thumbnails: ThumbnailProcess,
    api_server: ApiProcess,
    admin_auth: dict[str, str],
    api: ApiClient,
    s3: Any,
    moto: MotoServer,
    aws_env: bootstrap.Environment,
) -> None:
    slug = signed_up(api_server, api)
    tenants = Custom(api, TENANTS)
    key = upload(api_server, admin_auth, slug, logo_files.png(text="GPS 51.5N"))

    logo = wait_for(
        lambda: (tenants.get("tenants", slug).get("status") or {}).get("logo"),
        60,
        "status.logo",
    )
    for size in (64, 256):
        # The bucket is private (CloudFront serves it in prod): read the URL's object as us.
        prefix = f"{moto.url}/{aws_env.logo_bucket}/"
        assert logo[f"url{size}"].startswith(prefix), logo
        got = s3.get_object(Bucket=aws_env.logo_bucket, Key=logo[f"url{size}"][len(prefix) :])
        content = got["Body"].read()
        assert got["ContentType"] == "image/png"
        image = Image.open(io.BytesIO(content))
        assert image.format == "PNG" and image.size == (size, size)
        assert b"GPS" not in content
    assert tenants.condition("tenants", slug, "LogoRejected")["reason"] == "Accepted"
    assert tenants.condition("tenants", slug, "Ready")["status"] == "True"  # the operator's
    made = processed(s3, aws_env.logo_bucket, slug)
    assert len(made) == 2 and all(k.startswith(f"logos/{slug}/") for k in made)
    settings = moto.settings(get_settings(), aws_max_attempts=1)
    # The worker marks the upload's claim done just after it writes status.logo.
    done = wait_for(
        lambda: claim(settings, aws_env.email_jobs_table, aws_env.logo_raw_bucket, key, s3).get(
            "messageId"
        ),
        30,
        "the upload's claim marked done",
    )
    assert done["S"] == "thumbnails"

    # S3 notifies at least once: the same event again is skipped, nothing is written twice.
    etag = s3.head_object(Bucket=aws_env.logo_raw_bucket, Key=key)["ETag"].strip('"')
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": aws_env.logo_raw_bucket},
                    "object": {"key": key, "eTag": etag},
                },
            }
        ]
    }
    aws.client("sqs", settings).send_message(
        QueueUrl=aws_env.thumbnail_queue_url, MessageBody=json.dumps(event)
    )
    wait_for(
        lambda: f"upload {key} (version {etag}) done before; skipped" in thumbnails.log_text(),
        60,
        "the duplicate event skipped",
    )
    assert processed(s3, aws_env.logo_bucket, slug) == made

    # The operator's next reconcile leaves the worker's field alone (one writer per field).
    tenants.api.patch_namespaced_custom_object(
        "platform.herd-itt.com",
        "v1alpha1",
        TENANTS,
        "tenants",
        slug,
        {"metadata": {"annotations": {"test.herd-itt.com/poke": "1"}}},
    )
    # Kopf records the poke in the Tenant's diff base once that reconcile is done.
    wait_for(
        lambda: (
            "test.herd-itt.com/poke"
            in (tenants.get("tenants", slug)["metadata"].get("annotations") or {}).get(
                "platform.herd-itt.com/last-handled-configuration", ""
            )
        ),
        60,
        "the poked Tenant reconciled",
    )
    tenants.wait_condition("tenants", slug, timeout=60)
    assert (tenants.get("tenants", slug)["status"] or {}).get("logo") == logo


BAD = [
    ("garbage", logo_files.png_header_then_garbage(), None, "Undecodable"),
    ("bomb", logo_files.huge_png(), None, "TooManyPixels"),
    ("svg-as-png", logo_files.SVG, None, "Undecodable"),
    ("oversize", logo_files.oversize(), None, "TooLarge"),
    ("wrong-type", logo_files.png(), "text/html", "WrongContentType"),
    ("svg-type", logo_files.SVG, "image/svg+xml", "WrongContentType"),
]


def test_hostile_uploads_end_in_logo_rejected_and_write_nothing(
    thumbnails: ThumbnailProcess,
    api_server: ApiProcess,
    admin_auth: dict[str, str],
    api: ApiClient,
    s3: Any,
    moto: MotoServer,
    aws_env: bootstrap.Environment,
) -> None:
    slug = signed_up(api_server, api, ready=False)
    tenants = Custom(api, TENANTS)
    settings = moto.settings(get_settings(), aws_max_attempts=1)
    for name, data, sent_type, reason in BAD:
        key = upload(api_server, admin_auth, slug, data, sent_type=sent_type)
        done = wait_for(
            lambda key=key: (
                claim(  # type: ignore[misc]
                    settings, aws_env.email_jobs_table, aws_env.logo_raw_bucket, key, s3
                )
                .get("state", {})
                .get("S")
                == "sent"
            ),
            60,
            f"{name} handled",
        )
        assert done
        item = claim(settings, aws_env.email_jobs_table, aws_env.logo_raw_bucket, key, s3)
        assert item["messageId"]["S"] == f"rejected:{reason}", (name, item)
        rejected = tenants.condition("tenants", slug, "LogoRejected")
        assert rejected["status"] == "True" and rejected["reason"] == reason, (name, rejected)
        assert processed(s3, aws_env.logo_bucket, slug) == [], name
    assert not (tenants.get("tenants", slug).get("status") or {}).get("logo")
    # A refused upload after a good one keeps the good logo.
    upload(api_server, admin_auth, slug, logo_files.jpeg(), "image/jpeg")
    logo = wait_for(
        lambda: (tenants.get("tenants", slug).get("status") or {}).get("logo"), 60, "logo"
    )
    key = upload(api_server, admin_auth, slug, logo_files.png_header_then_garbage())
    wait_for(
        lambda: claim(settings, aws_env.email_jobs_table, aws_env.logo_raw_bucket, key, s3).get(
            "messageId", {}
        ),
        60,
        "garbage handled",
    )
    assert tenants.get("tenants", slug)["status"]["logo"] == logo
    assert tenants.condition("tenants", slug, "LogoRejected")["reason"] == "Undecodable"


def sent_to(moto: MotoServer, email: str) -> list[dict[str, Any]]:
    return [
        json.loads(m["template_data"])
        for m in moto.data()["ses"].get("TemplateMessage", [])
        if email in m["destinations"]["ToAddresses"]
    ]


def test_the_logo_reaches_the_realm_and_a_welcome_email_sent_after_it(
    thumbnails: ThumbnailProcess,
    worker: WorkerProcess,
    openremote: OpenRemoteStub,
    api_server: ApiProcess,
    admin_auth: dict[str, str],
    api: ApiClient,
    moto: MotoServer,
) -> None:
    """Upload -> two thumbnails -> Tenant status -> the OpenRemote realm's logo and the URL in
    the welcome email sent afterwards; a tenant without a logo gets its email without one."""
    tenants = Custom(api, TENANTS)
    worker.stop()  # the welcome emails wait in the queue while the logo is made
    try:
        slug, plain = signed_up(api_server, api), signed_up(api_server, api)
        for name in (slug, plain):
            tenants.wait_condition("tenants", name, "WelcomeEmailQueued")
        upload(api_server, admin_auth, slug, logo_files.jpeg(), "image/jpeg")
        logo = wait_for(
            lambda: (tenants.get("tenants", slug).get("status") or {}).get("logo"), 60, "logo"
        )
        wait_for(
            lambda: (
                openremote.manager_config.get("realms", {}).get(slug, {}).get("logo")
                == logo["url256"]
            ),
            60,
            "the realm's logo in OpenRemote",
        )
        # The status records the logo just after the realm shows it.
        wait_for(
            lambda: tenants.get("tenants", slug)["status"].get("realmLogoURL") == logo["url256"],
            30,
            "realmLogoURL in the Tenant's status",
        )
        assert plain not in openremote.manager_config.get("realms", {})
    finally:
        worker.start()
    for name in (slug, plain):
        tenants.wait_condition("tenants", name, "WelcomeEmailSent", timeout=90)
    [with_logo] = sent_to(moto, f"owner@{slug}.example.com")
    assert with_logo["logoURL"] == logo["url256"]
    [without] = sent_to(moto, f"owner@{plain}.example.com")
    assert without["logoURL"] == ""


def gauge(process: HerdProcess, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{process.health_port}/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else -1.0


def test_a_poison_message_lands_in_the_dead_letter_queue_and_the_metric_says_so(
    thumbnails: ThumbnailProcess, moto: MotoServer, aws_env: bootstrap.Environment
) -> None:
    sqs = aws.client("sqs", moto.settings(get_settings(), aws_max_attempts=1))
    sqs.send_message(QueueUrl=aws_env.thumbnail_queue_url, MessageBody="not an S3 event")
    wait_for(lambda: gauge(thumbnails, "herd_thumbnail_dlq_messages") >= 1, 90, "dead-lettered")
    assert "thumbnail job" in thumbnails.log_text() and "failed" in thumbnails.log_text()


def test_a_failed_delete_message_never_stops_the_thumbnail_worker(
    thumbnails: ThumbnailProcess,
    proxy: FaultProxy,
    api_server: ApiProcess,
    admin_auth: dict[str, str],
    api: ApiClient,
    s3: Any,
    moto: MotoServer,
    aws_env: bootstrap.Environment,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SQS refuses the DeleteMessage after a finished upload: the worker logs it and takes
    the next upload; the first message comes back and is skipped as done."""
    queue_name = aws_env.thumbnail_queue_url.rstrip("/").rsplit("/", 1)[-1]
    refused = proxy.fail("DeleteMessage", times=1, fault="invalid", contains=queue_name)
    thumbnails.stop()  # the proxied worker alone takes the queue's messages
    proxied = ThumbnailProcess(
        env={
            **thumbnails.env,
            "AWS_ENDPOINT_URL": proxy.url,
            # The undeleted message comes back after 5 s, not a minute.
            "HERD_WORKER_VISIBILITY_TIMEOUT": "5",
            "HERD_WORKER_CLAIM_LEASE": "5",
        },
        log=tmp_path_factory.mktemp("thumbs-proxied") / "thumbnails.log",
    )
    try:
        proxied.start()
        tenants = Custom(api, TENANTS)
        settings = moto.settings(get_settings(), aws_max_attempts=1)
        slug = signed_up(api_server, api, ready=False)

        def done(key: str) -> str:
            item = claim(settings, aws_env.email_jobs_table, aws_env.logo_raw_bucket, key, s3)
            return str(item.get("messageId", {}).get("S", ""))

        first = upload(api_server, admin_auth, slug, logo_files.png())
        wait_for(lambda: refused.hits == 1, 60, "the first upload's DeleteMessage refused")
        assert done(first) == "thumbnails"

        second = upload(api_server, admin_auth, slug, logo_files.jpeg(), "image/jpeg")
        second_etag = s3.head_object(Bucket=aws_env.logo_raw_bucket, Key=second)["ETag"]
        wait_for(
            lambda: (
                ((tenants.get("tenants", slug).get("status") or {}).get("logo") or {}).get(
                    "sourceVersion"
                )
                == second_etag.strip('"')
            ),
            60,
            "the second upload made the logo",
        )
        assert proxied.running()
        assert "deleting message" in proxied.log_text()
        # The message whose delete failed shows again and is skipped: its claim says done.
        version = s3.head_object(Bucket=aws_env.logo_raw_bucket, Key=first)["ETag"].strip('"')
        skipped = f"upload {first} (version {version}) done before; skipped"
        wait_for(
            lambda: skipped in proxied.log_text(),
            60,
            "the undeleted message skipped on its return",
        )
        assert proxied.running()
    finally:
        proxy.clear()
        proxied.stop()
        thumbnails.start()
