"""200 Tenants applied at once: how long until all are Ready and every welcome email is sent.

    uv run python bench/tenants.py [--tenants 200]

Runs its own embedded control plane, moto, one operator and one worker (real processes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from common import rss_mib  # bench/ is on sys.path when a script runs
from kubernetes import client, config
from rich.console import Console
from rich.table import Table

from herd_operator.constants import GROUP, VERSION
from herd_operator.local import bootstrap, crds
from herd_operator.local.controlplane import ControlPlane
from herd_operator.local.moto_server import MotoServer
from herd_operator.local.process import free_port, wait_until
from herd_operator.local.service import Service
from herd_operator.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
HERD = [sys.executable, "-m", "herd_operator"]
console = Console()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    settings = get_settings().model_copy(update={"state_dir": tmp})
    cp = ControlPlane.named("bench", settings=settings)
    moto = MotoServer(root=tmp / "moto")
    services = [Service("operator", tmp / "services"), Service("worker", tmp / "services")]
    try:
        with console.status("starting control plane, moto, operator, worker"):
            cp.start()
            moto.start()
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            aws = settings.model_copy(update={"aws_endpoint_url": moto.url})
            resources = bootstrap.bootstrap(aws)
            api = config.new_client_from_config(config_file=str(cp.kubeconfig))
            crds.install(api, ROOT / "charts" / "herd-operator" / "crds")
            env = {
                **os.environ,
                **resources.env(),
                "KUBECONFIG": str(cp.kubeconfig),
                "AWS_ENDPOINT_URL": moto.url,
                "HERD_WAITING_DELAY": "1",
                "HERD_WORKER_WAIT_SECONDS": "1",
                "HERD_WORKER_MAX_SEND_RATE": "100",
            }
            health = free_port()
            services[0].start(
                [*HERD, "operator", "run"],
                env | {"HERD_HEALTH_PORT": str(health), "HERD_METRICS_PORT": "0"},
                health=f"http://127.0.0.1:{health}/healthz",
            )
            health = free_port()
            services[1].start(
                [*HERD, "worker", "run"],
                env | {"HERD_WORKER_PORT": str(health)},
                health=f"http://127.0.0.1:{health}/healthz",
            )
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
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

        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(args.tenants)))
        applied = time.perf_counter() - t0
        with console.status(f"waiting for {args.tenants} Tenants"):
            wait_until(lambda: count(ready) == args.tenants, 1800, interval=1)
            all_ready = time.perf_counter() - t0
            wait_until(lambda: count(sent) == args.tenants, 1800, interval=1)
            all_sent = time.perf_counter() - t0
        per_tenant = []
        for t in tenants():
            created = datetime.fromisoformat(t["metadata"]["creationTimestamp"])
            ready_at = next(
                c["lastTransitionTime"] for c in t["status"]["conditions"] if c["type"] == "Ready"
            )
            per_tenant.append((datetime.fromisoformat(ready_at) - created).total_seconds())
        emails = len(moto.data()["ses"]["TemplateMessage"])
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
        table.add_row("operator RSS after (MiB)", f"{rss_mib(services[0].pids()[0]):.0f}")
        console.print(table)
    finally:
        for s in services:
            s.stop()
        moto.stop()
        cp.stop()


if __name__ == "__main__":
    main()
