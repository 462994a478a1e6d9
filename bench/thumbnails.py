"""Logo thumbnails per second: Pillow alone (in this process) and end to end (uploads into
moto's raw bucket -> S3 notification -> SQS -> one thumbnail worker process -> two PNGs in
the processed bucket and status.logo on the Tenant).

    uv run python bench/thumbnails.py [--logos 60] [--pillow 40]

A "logo" is one upload, made into both thumbnails (64 and 256 px).
"""

from __future__ import annotations

import argparse
import io
import time
import uuid

from common import create_tenant, stack  # bench/ is on sys.path when a script runs
from kubernetes import client
from PIL import Image
from rich.console import Console
from rich.table import Table

from herd_api.worker import images
from herd_core import aws
from herd_devkit.local.process import wait_until

console = Console()
CAP = 25_000_000


def picture(fmt: str, width: int, height: int) -> bytes:
    """A logo-like image with detail (a gradient and shapes), so codecs have work to do."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    for i in range(0, min(width, height), max(8, min(width, height) // 12)):
        img.paste((30 + i % 200, 120, 80), (i, i, i + width // 10, i + height // 10))
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


INPUTS = {
    "PNG 512 x 512": ("image/png", picture("PNG", 512, 512)),
    "PNG 1024 x 1024": ("image/png", picture("PNG", 1024, 1024)),
    "JPEG 2000 x 1500": ("image/jpeg", picture("JPEG", 2000, 1500)),
    "WebP 1024 x 1024": ("image/webp", picture("WEBP", 1024, 1024)),
}


def pillow(count: int) -> Table:
    table = Table("input", "size", "logos/s (1 core)", "ms per logo")
    for name, (ctype, data) in INPUTS.items():
        images.thumbnails(data, ctype, CAP)  # warm up the codec
        started = time.perf_counter()
        for _ in range(count):
            images.thumbnails(data, ctype, CAP)
        elapsed = time.perf_counter() - started
        table.add_row(
            name,
            f"{len(data) / 1024:.0f} KiB",
            f"{count / elapsed:.1f}",
            f"{elapsed / count * 1000:.1f}",
        )
    return table


def end_to_end(count: int) -> Table:
    ctype, data = INPUTS["PNG 1024 x 1024"]
    with stack("herd-bench-thumbs-") as s:
        client.CoreV1Api(s.api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name="tenants"))
        )
        slugs = [f"bench-{i}" for i in range(5)]
        for slug in slugs:
            create_tenant(s.api, slug, slug, f"a@{slug}.example.com")
        s.run(
            ["worker", "run", "--kind", "thumbnails"],
            "HERD_WORKER_PORT",
            HERD_TENANTS_NAMESPACE="tenants",
            HERD_WORKER_WAIT_SECONDS="1",
        )
        s3 = aws.client("s3", s.aws)
        raw, done = s.resources.logo_raw_bucket, s.resources.logo_bucket

        def made() -> int:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=done, Prefix="logos/")
            return sum(len(p.get("Contents", [])) for p in pages)

        started = time.perf_counter()
        for i in range(count):
            key = f"raw/{slugs[i % len(slugs)]}/{uuid.uuid4()}"
            s3.put_object(Bucket=raw, Key=key, Body=data, ContentType=ctype)
        uploaded = time.perf_counter() - started
        if not wait_until(lambda: made() >= 2 * count, 600, interval=0.5):
            raise RuntimeError(f"only {made()} of {2 * count} thumbnails after 10 minutes")
        elapsed = time.perf_counter() - started
    table = Table("logos", "uploaded in", "all thumbnails in", "logos/s", "thumbnails/s")
    table.add_row(
        str(count),
        f"{uploaded:.1f} s",
        f"{elapsed:.1f} s",
        f"{count / elapsed:.1f}",
        f"{2 * count / elapsed:.1f}",
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logos", type=int, default=60, help="uploads end to end")
    parser.add_argument("--pillow", type=int, default=40, help="logos per input, Pillow alone")
    args = parser.parse_args()
    console.print("Pillow alone (decode, fit, two PNGs), this process:")
    console.print(pillow(args.pillow))
    console.print("End to end through moto, SQS and one thumbnail worker process (PNG 1024 px):")
    console.print(end_to_end(args.logos))


if __name__ == "__main__":
    main()
