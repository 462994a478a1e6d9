"""Tenants applied at once: how long until all are Ready and every welcome email is sent;
moto's own rate for the same AWS calls; the CPU each part of the stack took meanwhile; an
operator restart over all of them; its memory.

AWS is the local one that holds AWS's quotas (herd_core.quotas, default figures, SES out
of the sandbox): the bench prints the throttling and quota errors it answered, and the time
beside the quota-bound minimum (count / the binding rate of the table). moto's own rate is
measured on a second moto without that front, so it is moto's and not the quotas'.

    uv run python bench/tenants.py [--tenants 1000] [--soak 1800] [--drift-interval 60]
                                   [--profile stacks.txt]

Runs its own embedded control plane, moto, one operator and one worker (real processes).
Prints each figure beside the issue's target for it (targets live here, never in tests).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from common import (
    Bench,
    create_tenant,
    py_spy,
    rss_mib,
    stack,
    tenants_namespace,
)  # bench/ is on sys.path when a script runs
from cpu import CpuMeter, cpu_seconds, summary
from kubernetes import client, watch
from rich.console import Console
from rich.table import Table
from urllib3.exceptions import ProtocolError

from herd_core import aws, quotas
from herd_core.constants import GROUP, VERSION
from herd_devkit.local import bootstrap
from herd_devkit.local.aws_quotas import REFUSALS_PATH
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import wait_until

console = Console()
WRITES = ("Create", "Update", "Delete", "Put", "Send", "Admin", "Set")  # AWS operation prefixes
# A Tenant's rated AWS calls on the shared client (docs/tenant-model.md): the operator's
# AdminCreateUser, the worker's send. The quota-bound minimum is count / the slowest rate.
TENANT_CALLS = (("cognito-idp", "AdminCreateUser"),)


def moto_rate(st: Bench, count: int, threads: int = 8) -> float:
    """Tenants/s that moto alone takes for a Tenant's AWS calls on the shared client
    (AdminCreateUser, SQS SendMessage, SES SendTemplatedEmail), driven directly with boto3
    from `threads` threads against a second moto without the quota front (its own rate, not
    AWS's quotas), in a pool made as the platform's is (email as the username, found
    through the local AWS's index: moto alone went through every user on each create)."""
    raw = MotoServer(st.root / "moto-raw", server_env={"HERD_LOCAL_AWS_QUOTAS": "false"}).start()
    try:
        # No client-side pacing either: raised far past any rate moto reaches.
        unpaced = {q.key: 1e6 for q in quotas.QUOTAS.values() if q.kind == "rate"}
        settings = raw.settings(st.stack.settings, aws_quotas=unpaced)
        idp, sqs = aws.client("cognito-idp", settings), aws.client("sqs", settings)
        ses = aws.client("ses", settings)
        pool = bootstrap.user_pool(settings, "bench-moto-rate")
        ses.verify_email_identity(EmailAddress="noreply@example.com")
        ses.create_template(
            Template={"TemplateName": "rate", "SubjectPart": "Hi", "TextPart": "Hi {{n}}"}
        )

        def one(i: int) -> None:
            email = f"rate-{i}@example.com"
            idp.admin_create_user(
                UserPoolId=pool,
                Username=email,
                MessageAction="SUPPRESS",
                UserAttributes=[{"Name": "email", "Value": email}],
            )
            sqs.send_message(QueueUrl=queue, MessageBody="{}")
            ses.send_templated_email(
                Source="noreply@example.com",
                Destination={"ToAddresses": [email]},
                Template="rate",
                TemplateData=json.dumps({"n": i}),
            )

        queue = sqs.create_queue(QueueName="bench-moto-rate")["QueueUrl"]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, range(count)))
        return count / (time.perf_counter() - t0)
    finally:
        raw.stop()


def refusals(st: Bench) -> Counter[tuple[str, str, str]]:
    """What the local AWS's quota front refused so far, by (operation, code, what was
    reached: rate, count, daily, sandbox)."""
    rows = httpx.get(f"{st.moto.url}{REFUSALS_PATH}", timeout=30).json()
    return Counter({(r["operation"], r["code"], r["reached"]): r["count"] for r in rows})


def quota_bound(st: Bench, n: int) -> tuple[float, str, float]:
    """The least time AWS's quotas allow for `n` Tenants Ready (the binding rate of
    TENANT_CALLS in the table, with this account's HERD_AWS_QUOTAS) and for their `n`
    emails (the sending rate GetSendQuota answers): (Ready s, its quota, emails s)."""
    rates = [
        (quotas.limit(q.key, st.aws.aws_quotas), q.key)
        for service, operation in TENANT_CALLS
        for q in quotas.rates_of(service, operation)
    ]
    rate, key = min(rates)
    send_rate = float(aws.client("ses", st.aws).get_send_quota()["MaxSendRate"])
    return n / rate, f"{key} {quotas.figure(rate)}/s", n / send_rate


class Progress(threading.Thread):
    """When each Tenant turned Ready and got its email, from a watch: polling a list of every
    Tenant each second would load the API server more than the operator does."""

    def __init__(self, custom: client.CustomObjectsApi, ready: Any, sent: Any) -> None:
        super().__init__(daemon=True)
        self.custom, self.is_ready, self.is_sent = custom, ready, sent
        self.ready: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        version = None
        while not self.stop:
            stream = watch.Watch().stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                "tenants",
                "tenants",
                resource_version=version,
                timeout_seconds=60,
            )
            try:
                for event in stream:
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    name, now = obj["metadata"]["name"], time.perf_counter()
                    if self.is_ready(obj):
                        self.ready.setdefault(name, now)
                    if self.is_sent(obj):
                        self.sent.setdefault(name, now)
                    if self.stop:
                        return
            except (ProtocolError, client.ApiException):
                if self.stop:
                    return  # the stack is going down under the watch
                version = None  # expired or cut: list again (each time is kept once)


def aws_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_idle(files: list[Path], pid: int, quiet: float, timeout: float) -> float:
    """Seconds from now until, for `quiet` seconds (that quiet excluded), none of `files`
    grew and process `pid` took under 5% of a core: an operator passing over Ready objects
    logs nothing for them, so its log alone would call it idle too soon."""
    step = 0.5
    t0 = time.perf_counter()
    sizes = [f.stat().st_size if f.exists() else 0 for f in files]
    cpu = cpu_seconds(pid)
    last_change = t0
    while time.perf_counter() - t0 < timeout:
        time.sleep(step)
        now = [f.stat().st_size if f.exists() else 0 for f in files]
        cpu_now = cpu_seconds(pid)
        if now != sizes or cpu_now - cpu > 0.05 * step:
            last_change = time.perf_counter()
        elif time.perf_counter() - last_change >= quiet:
            return last_change - t0
        sizes, cpu = now, cpu_now
    return float("inf")


WORKER_COUNTERS = (
    "herd_emails_unknown_outcome_total",
    "herd_email_claims_lost_total",
    "herd_emails_duplicate_total",
)


def worker_counters(urls: list[str]) -> Counter[str]:
    """WORKER_COUNTERS summed over every worker's /metrics."""
    total: Counter[str] = Counter()
    for url in urls:
        for line in httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text.splitlines():
            name, _, value = line.partition(" ")
            if name in WORKER_COUNTERS:
                total[name] += float(value)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument(
        "--soak", type=float, default=0, help="seconds of drift ticks to watch the RSS over"
    )
    parser.add_argument("--drift-interval", type=float, default=300, help="drift tick (prod: 300)")
    parser.add_argument(
        "--moto-rate", type=int, default=0, help="tenants for moto's rate (default: --tenants)"
    )
    parser.add_argument(
        "--workers", type=int, default=3, help="email worker processes (0: no emails sent)"
    )
    parser.add_argument(
        "--send-rate",
        type=float,
        default=0,
        help="SES emails/s, all workers (default: the local AWS's GetSendQuota, 14/s)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy stacks (raw) of the operator during the burst"
    )
    args = parser.parse_args()
    n = args.tenants
    with stack("herd-bench-") as st:
        calls_log = st.root / "operator-aws-calls.jsonl"
        operator_env = {
            "HERD_METRICS_PORT": "0",
            "HERD_WAITING_DELAY": "1",
            "HERD_DRIFT_INTERVAL": str(args.drift_interval),
        }
        # The call log costs the operator a file append per call: on for the restart only.
        restart_env = {**operator_env, "HERD_AWS_CALL_LOG": str(calls_log)}
        worker_urls: list[str] = []
        with console.status("starting control plane, moto, operator, worker"):
            st.run(["operator", "run"], "HERD_HEALTH_PORT", **operator_env)
            # A production SES rate: the budget item keeps one time per send allowed in a
            # window, so an unreal 1,000/s makes each take move 1,000 numbers. Unset, the
            # workers read it from GetSendQuota, as on AWS.
            rate = {"HERD_WORKER_MAX_SEND_RATE": str(args.send_rate)} if args.send_rate else {}
            for w in range(args.workers):  # they share one send budget (DynamoDB)
                worker_urls.append(
                    st.run(
                        ["worker", "run"],
                        "HERD_WORKER_PORT",
                        name=f"worker-{w}",
                        HERD_WORKER_WAIT_SECONDS="1",
                        **rate,
                    )
                )
            custom = client.CustomObjectsApi(st.api)
            tenants_namespace(st.api)
        operator = st.services[0]
        with console.status(f"moto alone: {args.moto_rate or n} tenants' core calls, 8 threads"):
            moto_per_s = moto_rate(st, args.moto_rate or n)

        def create(i: int) -> None:
            slug = f"bench-{i:05d}"
            create_tenant(st.api, slug, f"Bench {i}", f"admin@{slug}.example.com")

        def tenants() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            token = None
            while True:
                page = custom.list_namespaced_custom_object(
                    GROUP, VERSION, "tenants", "tenants", limit=500, _continue=token
                )
                found += page["items"]
                token = page["metadata"].get("continue")
                if not token:
                    return found

        def ready(t: dict[str, Any]) -> bool:
            return bool((t.get("status") or {}).get("phase") == "Ready")

        def sent(t: dict[str, Any]) -> bool:
            return bool(((t.get("status") or {}).get("welcomeEmail") or {}).get("sentAt"))

        spy = None
        if args.profile:
            pid, out = str(operator.pids()[0]), args.profile
            spy = subprocess.Popen(
                [py_spy(), "record", "--pid", pid, "--rate", "50", "--format", "raw", "-o", out],
                stdout=subprocess.DEVNULL,
            )
        bound_ready, binding, bound_sent = quota_bound(st, n)
        refused_before = refusals(st)
        progress = Progress(custom, ready, sent)
        meter = CpuMeter()
        operator_cpu = cpu_seconds(operator.pids()[0])
        t0 = time.perf_counter()
        progress.start()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(create, range(n)))
        applied = time.perf_counter() - t0
        with console.status(f"waiting for {n} Tenants"):
            wait_until(lambda: len(progress.ready) == n, 3600, interval=0.2)
            all_ready = max(progress.ready.values()) - t0
            cpu = meter.stop()
            # Of this operator's process alone: other operators on the machine (tests) would
            # count in the meter's part of that name.
            operator_cpu = cpu_seconds(operator.pids()[0]) - operator_cpu
            all_sent = None
            if args.workers:  # 0: the restart's figures at 10,000 without an hour of emails
                wait_until(lambda: len(progress.sent) == n, 3600, interval=0.2)
                all_sent = max(progress.sent.values()) - t0
        progress.stop = True
        refused = refusals(st) - refused_before
        # The operator's calls are Cognito's and SES's template calls; the workers' the sends.
        throttled = Counter(
            "workers" if op in quotas.SES_SENDS else "operator"
            for (op, _, reached), v in refused.items()
            for _ in range(v)
            if reached == "rate"
        )
        quota_errors = sum(v for (_, _, reached), v in refused.items() if reached != "rate")
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        per_tenant = []
        key_of: dict[str, str] = {}  # admin email: the welcome job's idempotency key
        reported: dict[str, str] = {}  # admin email: the SES message id its status names
        for t in tenants():
            key_of[t["spec"]["adminEmail"]] = f"welcome-{t['metadata']['uid']}"
            message_id = ((t.get("status") or {}).get("welcomeEmail") or {}).get("messageId")
            if message_id:
                reported[t["spec"]["adminEmail"]] = message_id
            created = datetime.fromisoformat(t["metadata"]["creationTimestamp"])
            ready_at = next(
                c["lastTransitionTime"] for c in t["status"]["conditions"] if c["type"] == "Ready"
            )
            per_tenant.append((datetime.fromisoformat(ready_at) - created).total_seconds())
        messages = st.moto.data()["ses"].get("TemplateMessage", [])
        sent_to = Counter(m["destinations"]["ToAddresses"][0] for m in messages)
        # A Tenant whose status names a message SES never took: a loss, not a miscount.
        held = {m["id"] for m in messages}
        unheld = sorted(to for to, message_id in reported.items() if message_id not in held)
        emails = sum(sent_to.values())
        twice = sorted(to for to, times in sent_to.items() if times > 1)
        counters = worker_counters(worker_urls)
        workers_logs = [s for s in st.services if s is not operator]
        rss_ready = rss_mib(operator.pids()[0])

        rss_soak = None
        passes: list[str] = []
        if args.soak:
            with console.status(f"{args.soak:.0f} s of drift ticks"):
                time.sleep(args.soak)  # a bench watching memory over time, not a test
            rss_soak = rss_mib(operator.pids()[0])
            # Each pass says how many objects it checked: a pass cut short shows here.
            passes = [
                line.split("drift pass ", 1)[1]
                for line in operator.log.read_text(errors="replace").splitlines()
                if "drift pass " in line
            ]

        # Restart over every Ready Tenant: how long until idle, and what it asked of AWS.
        with console.status("restarting the operator"):
            operator.stop()
            resume_from = len(aws_calls(calls_log))
            t1 = time.perf_counter()
            st.services.remove(operator)
            st.run(["operator", "run"], "HERD_HEALTH_PORT", **restart_env)
            operator = st.services[-1]
            started = time.perf_counter() - t1
            idle = started + wait_idle(
                [calls_log, operator.log], operator.pids()[0], quiet=10, timeout=600
            )
        rss_restarted = rss_mib(operator.pids()[0])
        resumed = aws_calls(calls_log)[resume_from:]
        by_op = Counter(c["operation"] for c in resumed)
        aws_writes = sum(v for k, v in by_op.items() if k.startswith(WRITES))
        # An operator that does nothing is idle too: one new Tenant shows it works again.
        with console.status("a new Tenant after the restart"):
            t2 = time.perf_counter()
            create(n)
            slug = f"bench-{n:05d}"
            wait_until(
                lambda: ready(
                    custom.get_namespaced_custom_object(GROUP, VERSION, "tenants", "tenants", slug)
                ),
                600,
                interval=0.2,
            )
            new_ready = time.perf_counter() - t2

        table = Table("figure", "value", "target", title=f"{n} Tenants applied at once")

        def row(name: str, value: str, target: str = "", met: bool | None = None) -> None:
            mark = "" if met is None else (" ✓" if met else " ✗")
            table.add_row(name, value, target + mark)

        row("all applied (s)", f"{applied:.1f}")
        row("all Ready (s)", f"{all_ready:.1f}", "≤ 60 (1,000)", all_ready <= 60)
        if all_sent is None:
            row("all welcome emails sent (s)", "not measured (--workers 0)", "≤ 75 (1,000)")
        else:
            row("all welcome emails sent (s)", f"{all_sent:.1f}", "≤ 75 (1,000)", all_sent <= 75)
        row(
            "  quota-bound minimum for all Ready (s)",
            f"{bound_ready:.1f} ({n} / {binding})",
            f"run ÷ bound: {all_ready / bound_ready:.2f}",
        )
        if all_sent is not None:
            row(
                "  quota-bound minimum for all emails (s)",
                f"{bound_sent:.1f} ({n} / ses.sending_rate {n / bound_sent:.3g}/s)",
                f"run ÷ bound: {all_sent / bound_sent:.2f}",
            )
        row("Tenants Ready per second", f"{n / all_ready:.1f}")
        row("moto alone, tenants/s (shared-client calls, 8 threads)", f"{moto_per_s:.1f}")
        row(
            "  moto's own minimum for all Ready (s)",
            f"{n / moto_per_s:.1f}",
            f"run ÷ moto: {all_ready * moto_per_s / n:.2f}",
        )
        row(
            "AWS throttling errors: operator / workers",
            f"{throttled['operator']} / {throttled['workers']}",
            "0 / 0",
            not throttled,
        )
        row(
            "AWS quota errors (counts, daily, sandbox)",
            str(quota_errors) + (f": {dict(refused)}" if quota_errors else ""),
            "0",
            quota_errors == 0,
        )
        per_ms = operator_cpu / n * 1000
        row(
            "operator CPU per Tenant in the burst (ms)",
            f"{per_ms:.1f} ({operator_cpu:.0f} CPU-s)",
            "≤ 15",
            per_ms <= 15,
        )
        row(
            "create-to-Ready p50 / max (s)",
            f"{statistics.median(per_tenant):.0f} / {max(per_tenant):.0f}",
        )
        row(
            "emails sent",
            str(emails),
            f"exactly {n}",
            emails == n if all_sent is not None else None,
        )
        row(
            "  Tenants naming an SES message SES does not hold",
            f"{len(unheld)} (of {len(reported)} naming one)",
            "0",
            not unheld,
        )
        row(
            "  sends of unknown outcome / claims lost / duplicates dropped",
            " / ".join(f"{counters[name]:.0f}" for name in WORKER_COUNTERS),
        )
        row("operator RSS when all Ready (MiB)", f"{rss_ready:.0f}", "≤ 300 (10,000)")
        if rss_soak is not None:
            row(
                f"operator RSS after {args.soak:.0f} s of drift ticks (MiB)",
                f"{rss_ready:.0f} → {rss_soak:.0f}",
                "flat, ≤ 300",
                rss_soak <= 300 and rss_soak - rss_ready < 0.1 * rss_ready,
            )
        if args.soak:
            row("drift passes in the soak", "; ".join(passes) or "none")
        row("operator RSS after the restart, idle (MiB)", f"{rss_restarted:.0f}", "≤ 300 (10,000)")
        row("restart: idle again after (s)", f"{idle:.1f}", "≤ 60", idle <= 60)
        row(
            "restart: AWS calls (writes)",
            f"{len(resumed)} ({aws_writes})" + (f": {dict(by_op)}" if by_op else ""),
            "no writes",
            aws_writes == 0,
        )
        row("restart: a new Tenant Ready after (s)", f"{new_ready:.1f}")
        console.print(table)
        for to in unheld[:5] + twice[:20]:  # what the workers said of each address
            key = key_of.get(to, to)
            console.print(f"[bold]{to}[/] ({key}) emailed {sent_to[to]} times:")
            for service in workers_logs:
                for line in service.log.read_text(errors="replace").splitlines():
                    if key in line:
                        console.print(f"  {service.name}: {line}")
        console.print(f"CPU seconds from the first create to all Ready: {summary(*cpu)}")
        console.print(f"machine load (1/5/15 min): {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
