"""200 Tenants applied at once: how long until all are Ready and every welcome email is sent.

    uv run python bench/tenants.py [--tenants 200]

Runs its own embedded control plane, moto, one operator and one worker (real processes).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from common import rss_mib, stack  # bench/ is on sys.path when a script runs
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.process import wait_until

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument(
        "--profile", metavar="SVG", help="py-spy flame graph of the operator during the burst"
    )
    args = parser.parse_args()
    with stack("herd-bench-") as st:
        with console.status("starting control plane, moto, operator, worker"):
            st.run(
                ["operator", "run"],
                "HERD_HEALTH_PORT",
                HERD_METRICS_PORT="0",
                HERD_WAITING_DELAY="1",
            )
            st.run(
                ["worker", "run"],
                "HERD_WORKER_PORT",
                HERD_WORKER_WAIT_SECONDS="1",
                HERD_WORKER_MAX_SEND_RATE="100",
            )
            core, custom = client.CoreV1Api(st.api), client.CustomObjectsApi(st.api)
            core.create_namespace({"metadata": {"name": "tenants"}})
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                "tenants",
                "sestemplates",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "SESTemplate",
                    "metadata": {"name": "welcome"},
                    "spec": {"subject": "Welcome {{displayName}}", "text": "Hi {{displayName}}"},
                },
            )

        def create(i: int) -> None:
            slug = f"bench-{i:04d}"
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                "tenants",
                "tenants",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Tenant",
                    "metadata": {"name": slug},
                    "spec": {
                        "displayName": f"Bench {i}",
                        "slug": slug,
                        "adminEmail": f"admin@{slug}.example.com",
                        "plan": "starter",
                    },
                },
            )

        def tenants() -> list[dict]:  # type: ignore[type-arg]
            return custom.list_namespaced_custom_object(  # type: ignore[no-any-return]
                GROUP, VERSION, "tenants", "tenants"
            )["items"]

        def count(pred: object) -> int:
            return sum(1 for t in tenants() if pred(t))  # type: ignore[operator]

        def ready(t: dict) -> bool:  # type: ignore[type-arg]
            return bool((t.get("status") or {}).get("phase") == "Ready")

        def sent(t: dict) -> bool:  # type: ignore[type-arg]
            return bool(((t.get("status") or {}).get("welcomeEmail") or {}).get("sentAt"))

        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(st.services[0].pids()[0]),
                    "--rate",
                    "50",
                    "--format",
                    "raw",
                    "-o",
                    args.profile,
                ],
                stdout=subprocess.DEVNULL,
            )
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(args.tenants)))
        applied = time.perf_counter() - t0
        with console.status(f"waiting for {args.tenants} Tenants"):
            wait_until(lambda: count(ready) == args.tenants, 1800, interval=1)
            all_ready = time.perf_counter() - t0
            wait_until(lambda: count(sent) == args.tenants, 1800, interval=1)
            all_sent = time.perf_counter() - t0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        per_tenant = []
        for t in tenants():
            created = datetime.fromisoformat(t["metadata"]["creationTimestamp"])
            ready_at = next(
                c["lastTransitionTime"] for c in t["status"]["conditions"] if c["type"] == "Ready"
            )
            per_tenant.append((datetime.fromisoformat(ready_at) - created).total_seconds())
        emails = len(st.moto.data()["ses"]["TemplateMessage"])
        table = Table("figure", "value", title=f"{args.tenants} Tenants applied at once")
        table.add_row("all applied (s)", f"{applied:.1f}")
        table.add_row("all Ready (s)", f"{all_ready:.1f}")
        table.add_row("all welcome emails sent (s)", f"{all_sent:.1f}")
        table.add_row("Tenants Ready per second", f"{args.tenants / all_ready:.1f}")
        table.add_row(
            "create-to-Ready p50 / max (s)",
            f"{statistics.median(per_tenant):.0f} / {max(per_tenant):.0f}",
        )
        table.add_row("emails sent (must equal Tenants)", str(emails))
        table.add_row("operator RSS after (MiB)", f"{rss_mib(st.services[0].pids()[0]):.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
