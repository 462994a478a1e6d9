"""Operator memory with Tenants in retry backoff: every AWS call fails (an unreachable
endpoint), so each Tenant waits out its retries at once, as in an AWS outage.

    uv run python bench/backoff.py [--tenants 2000] [--watch 60]

Prints the operator's RSS idle, once all are retrying, over --watch seconds, and after a
restart over all of them. Runs its own control plane and operator (real processes).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import Bench, create_tenant, rss_mib, stack, tenants_namespace
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.process import wait_until

console = Console()
UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "HERD_AWS_MAX_ATTEMPTS": "1"}


def retrying(custom: client.CustomObjectsApi) -> int:
    """Tenants whose last reconcile failed and waits for its retry (read in pages)."""
    count, token = 0, None
    while True:
        page: dict[str, Any] = custom.list_namespaced_custom_object(
            GROUP, VERSION, "tenants", "tenants", limit=500, _continue=token
        )
        for item in page["items"]:
            conditions = (item.get("status") or {}).get("conditions") or []
            count += any(c.get("reason") == "Recoverable" for c in conditions)
        token = page["metadata"].get("continue")
        if not token:
            return count


def rss_over(pid: int, seconds: float, what: str) -> list[float]:
    """The process's RSS every 5 s for `seconds` (MiB)."""
    samples: list[float] = []
    end = time.monotonic() + seconds
    with console.status(f"{what}, RSS over {seconds:g} s"):
        while time.monotonic() < end:
            samples.append(rss_mib(pid))
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))  # sampling interval
    return samples


def start_operator(st: Bench) -> int:
    """The operator, every AWS call failing; its pid."""
    st.run(["operator", "run"], "HERD_HEALTH_PORT", HERD_METRICS_PORT="0", **UNREACHABLE)
    return int(st.services[-1].pids()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--watch", type=float, default=60, help="seconds of RSS once retrying")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with stack("herd-bench-backoff-") as st:
        tenants_namespace(st.api)
        pid = start_operator(st)
        idle = rss_mib(pid)
        rows.append(("operator RSS idle (MiB)", f"{idle:.0f}"))
        custom = client.CustomObjectsApi(st.api)
        with console.status(f"applying {args.tenants} Tenants"), ThreadPoolExecutor(16) as ex:
            list(
                ex.map(
                    lambda i: create_tenant(st.api, f"b-{i:05d}", f"B {i}", f"a@b{i}.example.com"),
                    range(args.tenants),
                )
            )
        t0 = time.perf_counter()
        with console.status("waiting until every Tenant is retrying"):
            wait_until(lambda: retrying(custom) >= args.tenants, 900, interval=2)
        rows.append(("all retrying after (s)", f"{time.perf_counter() - t0:.0f}"))
        samples = rss_over(pid, args.watch, "all retrying")
        rows.append(
            ("RSS while retrying, min / max (MiB)", f"{min(samples):.0f} / {max(samples):.0f}")
        )
        st.services[0].stop()
        st.services.clear()
        after = rss_over(start_operator(st), args.watch, "after a restart")
        rows.append(("after a restart, first / max (MiB)", f"{after[0]:.0f} / {max(after):.0f}"))
        per = (max(samples) - idle) / args.tenants * 1024
        rows.append(("per retrying Tenant (KiB)", f"{per:.0f}"))
    table = Table("figure", "value", title=f"{args.tenants} Tenants in retry backoff")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


if __name__ == "__main__":
    main()
