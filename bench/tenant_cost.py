"""What one Tenant costs: API-server requests (by verb and resource, from the API server's own
apiserver_request_total), AWS calls (the operator's call log) and handler runs, averaged over
N Tenants applied at once, from creation until every welcome email is sent."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from common import (
    create_tenant,
    stack,
    tenants_namespace,
)  # bench/ is on sys.path when a script runs
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from herd_core import conditions as cond
from herd_core.constants import GROUP, VERSION
from herd_devkit.local.process import wait_until
from herd_operator.gitops import rawapi

console = Console()


def api_requests(api: client.ApiClient) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total by (verb, resource, subresource)."""
    raw = rawapi.request(api, "GET", "/metrics", content_type="text/plain")
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(raw.data.decode()):
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                labels = sample.labels
                key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
                counts[key] += int(sample.value)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument(
        "--own-clients",
        action="store_true",
        help="every Tenant makes an app client of its own (no shared client: the model before "
        "issue 30)",
    )
    args = parser.parse_args()
    n = args.tenants
    # Empty: the operator makes a CognitoClient per Tenant, as it did before the shared one.
    own = {"HERD_COGNITO_SHARED_CLIENT_ID": ""} if args.own_clients else {}
    with stack("herd-bench-") as st:
        calls = st.root / "operator-aws-calls.jsonl"
        st.run(
            ["operator", "run"],
            "HERD_HEALTH_PORT",
            HERD_METRICS_PORT="0",
            HERD_WAITING_DELAY="1",
            HERD_AWS_CALL_LOG=str(calls),
            **own,
        )
        st.run(["worker", "run"], "HERD_WORKER_PORT", name="worker", HERD_WORKER_WAIT_SECONDS="1")
        custom = client.CustomObjectsApi(st.api)
        tenants_namespace(st.api)

        def template_ready() -> bool:
            t = custom.get_namespaced_custom_object(
                GROUP, VERSION, "tenants", "sestemplates", "welcome"
            )
            return cond.is_true((t.get("status") or {}).get("conditions"), cond.READY)  # type: ignore[union-attr]

        wait_until(template_ready, 60, interval=0.2)
        before, logged = api_requests(st.api), len(calls.read_text().splitlines())
        with ThreadPoolExecutor(16) as ex:
            list(
                ex.map(
                    lambda i: create_tenant(
                        st.api, f"req-{i:05d}", f"Req {i}", f"admin@req-{i:05d}.example.com"
                    ),
                    range(n),
                )
            )

        def all_sent() -> bool:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, "tenants", "tenants")
            return n == sum(
                1
                for t in items["items"]  # type: ignore[index]
                if ((t.get("status") or {}).get("welcomeEmail") or {}).get("sentAt")
            )

        with console.status(f"{n} Tenants to their welcome emails"):
            wait_until(all_sent, 600, interval=0.5)
            time.sleep(2)  # a measuring pause, not a synchronisation: late writes counted too
        after = api_requests(st.api)
        made = [json.loads(x) for x in calls.read_text().splitlines()[logged:]]
        log = (st.root / "logs" / "operator.log").read_text()
    per = Table(title=f"per Tenant, {n} applied at once")
    per.add_column("what")
    per.add_column("per Tenant", justify="right")
    # LISTs of Tenants are this script's own polling for the emails: left out.
    diff = {
        k: v - before.get(k, 0)
        for k, v in after.items()
        if v - before.get(k, 0) > 0 and k != ("LIST", "tenants", "")
    }
    per.add_row("API-server requests", f"{sum(diff.values()) / n:.2f}")
    for (verb, resource, sub), count in sorted(diff.items(), key=lambda kv: -kv[1])[:14]:
        per.add_row(f"  {verb} {resource}{'/' + sub if sub else ''}", f"{count / n:.2f}")
    per.add_row("AWS calls (operator)", f"{len(made) / n:.2f}")
    for op, count in Counter(str(c.get("operation")) for c in made).most_common():
        per.add_row(f"  {op}", f"{count / n:.2f}")
    runs = Counter(re.findall(r"Handler '(\w+)' succeeded", log))
    for handler, count in sorted(runs.items()):
        per.add_row(f"handler runs: {handler}", f"{count / n:.2f}")
    console.print(per)


if __name__ == "__main__":
    main()
