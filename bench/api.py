"""Signup API throughput and latency at fixed concurrency; worker emails/s against a
configured SES send rate.

    uv run python bench/api.py [--requests 400] [--concurrency 8] [--emails 200] [--rate 50]

Runs its own embedded control plane, moto, API (uvicorn) and worker, all on loopback.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import stack  # bench/ is on sys.path when a script runs
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_devkit.local.process import wait_until

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--emails", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="configured emails/s")
    args = parser.parse_args()
    with stack("herd-bench-api-") as st:
        with console.status("starting control plane, moto, API"):
            client.CoreV1Api(st.api).create_namespace({"metadata": {"name": "tenants"}})
            url = st.run(["api", "run"], "HERD_API_PORT", HERD_SIGNUP_BURST="1000000")

        def signup(_: int) -> float:
            slug = f"b-{uuid.uuid4().hex[:12]}"
            t0 = time.perf_counter()
            response = http.post(
                f"{url}/v1/signups",
                json={
                    "displayName": "Bench",
                    "slug": slug,
                    "adminEmail": f"a@{slug}.example.com",
                    "plan": "starter",
                },
            )
            assert response.status_code == 202, response.text
            return time.perf_counter() - t0

        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            for i in range(20):  # warm-up
                signup(i)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                latencies = sorted(pool.map(signup, range(args.requests)))
            wall = time.perf_counter() - t0

        with console.status(f"queueing {args.emails} email jobs"):
            st.queue_emails(args.emails, "bench")
        t0 = time.perf_counter()
        st.run(
            ["worker", "run"],
            "HERD_WORKER_PORT",
            HERD_WORKER_WAIT_SECONDS="1",
            HERD_WORKER_MAX_SEND_RATE=str(args.rate),
        )

        def sent() -> int:
            return len(st.moto.data()["ses"]["TemplateMessage"])

        with console.status(f"worker sending {args.emails} emails"):
            wait_until(lambda: sent() >= args.emails, 3600, interval=0.5)
        email_wall = time.perf_counter() - t0

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

        table = Table("figure", "value", title="signup API and email worker")
        table.add_row("signups", f"{args.requests} at concurrency {args.concurrency}")
        table.add_row("signups/s", f"{args.requests / wall:.0f}")
        table.add_row("latency p50 / p99 (ms)", f"{pct(0.50):.0f} / {pct(0.99):.0f}")
        table.add_row("latency mean (ms)", f"{statistics.mean(latencies) * 1000:.0f}")
        table.add_row("emails", f"{args.emails} at a configured {args.rate:g}/s")
        table.add_row("emails/s (incl. worker start)", f"{args.emails / email_wall:.1f}")
        table.add_row("emails sent (must equal jobs)", str(sent()))
        console.print(table)


if __name__ == "__main__":
    main()
