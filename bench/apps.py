"""Many small Applications from one repository (issue 33): N apps of M ConfigMaps each, all
created at once against a repository the operator has not cloned yet; then one commit that
changes every app, announced by the push webhook. Each figure is printed beside its target:

- the cold start: all N Synced, none stuck (a stuck one is named with its condition);
- the webhook's answer time for a push that matches all N (target: under 1 s);
- the commit that changes every app, applied by Herd, as a ratio of `kubectl apply
  --server-side` of the same N x M objects in the same run (target: at most 1.5x);
- the operator's RSS with N x M objects tracked, and again after --soak seconds of polls
  (target: at most 300 MiB, flat).

    uv run python bench/apps.py [--apps 1000] [--objects 10] [--soak 0] [--soak-poll 3m]

Runs its own embedded control plane, a real bare repository and the operator process (under
its chart's ServiceAccount, as on EKS).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import (  # bench/ is on sys.path when a script runs
    bench_project,
    gitops_operator,
    kept_on_failure,
    kubectl_apply,
    push,
    py_spy,
    rss_mib,
    sync_namespace,
)
from cpu import CpuMeter, summary
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_devkit.settings import get_settings
from herd_devkit.stack import Stack

NAMESPACE = "apps"  # every app's objects (names unique per app); kubectl's go to "kubectl"
console = Console()


def configmaps(app: int, count: int, version: str) -> str:
    return (
        "\n---\n".join(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"a{app:04d}-cm-{i:03d}"},
                    "data": {"v": version},
                }
            )
            for i in range(count)
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=10, help="ConfigMaps per app")
    parser.add_argument("--timeout", type=float, default=1800, help="per phase, seconds")
    parser.add_argument("--soak", type=float, default=0, help="seconds of polls for the RSS")
    parser.add_argument("--soak-poll", default="3m", help="pollInterval during the soak")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy stacks (raw) of the operator and its render children during the commit",
    )
    args = parser.parse_args()
    n, m = args.apps, args.objects
    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-apps-"))
    built = Stack(root=tmp, settings=get_settings())
    with kept_on_failure(built):
        with console.status("starting control plane and operator"):
            cp = built.cluster("bench")
            api = built.client(cp.kubeconfig)
            built.install_crds(api)
            custom = client.CustomObjectsApi(api)
            sync_namespace(api, NAMESPACE)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "kubectl"}})
            bench_project(api, [NAMESPACE])
            operator, webhook = gitops_operator(built, api, cp, [NAMESPACE], HERD_APP_TICK="2")
            repo = Repo.create(
                tmp / "repo",
                {f"apps/a{i:04d}/cms.yaml": configmaps(i, m, "v1") for i in range(n)},
            )

        def apps() -> list[dict[str, Any]]:
            found = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "applications")
            return list(found["items"])  # type: ignore[index]

        def synced_at(sha: str) -> tuple[int, Counter[str]]:
            done, stuck = 0, Counter[str]()
            for item in apps():
                st = item.get("status") or {}
                if (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get(
                    "revision"
                ) == sha:
                    done += 1
                for c in st.get("conditions") or []:
                    stuck[f"{c.get('type')}: {str(c.get('message'))[:120]}"] += 1
            return done, stuck

        def until_synced(sha: str, what: str) -> tuple[float, int, Counter[str]]:
            t0 = time.perf_counter()
            deadline = t0 + args.timeout
            done, stuck = 0, Counter[str]()
            with console.status(what) as shown:
                while time.perf_counter() < deadline:
                    done, stuck = synced_at(sha)
                    shown.update(f"{what}: {done}/{n} Synced")
                    if done == n:
                        break
                    time.sleep(2)  # a listing of N apps: not many times a second
            return time.perf_counter() - t0, done, stuck

        # 1. Cold start: N Applications at once, the repository never cloned.
        t0 = time.perf_counter()
        with console.status(f"creating {n} Applications"):
            for i in range(n):
                custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    "applications",
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Application",
                        "metadata": {"name": f"a{i:04d}"},
                        "spec": {
                            "project": "bench",
                            "source": {
                                "repoURL": repo.url,
                                "targetRevision": "dev",
                                "path": f"apps/a{i:04d}",
                            },
                            "destination": {"namespace": NAMESPACE},
                            "pollInterval": "1h",
                            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                        },
                    },
                )
        cold, cold_done, cold_stuck = until_synced(repo.head("dev"), "cold start")
        created = time.perf_counter() - t0 - cold

        # 2. One commit that changes every app; kubectl's figure for the same objects first.
        files = tmp / "kubectl"
        files.mkdir()
        for version in ("v1", "v2"):
            (files / f"{version}.yaml").write_text(
                "---\n".join(configmaps(i, m, version) for i in range(n))
            )

        def kubectl(name: str) -> float:
            return kubectl_apply(cp.kubeconfig, "kubectl", files / name)

        with console.status("kubectl apply --server-side"):
            kubectl("v1.yaml")
            meter = CpuMeter()
            k_change = kubectl("v2.yaml")
            k_cpu = meter.stop()
        sha = repo.commit(
            "dev",
            "change every app",
            {f"apps/a{i:04d}/cms.yaml": configmaps(i, m, "v2") for i in range(n)},
        )
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    *(py_spy(), "record", "--pid", str(operator.service.pids()[0])),
                    *("--subprocesses", "--rate", "50", "--format", "raw", "-o", args.profile),
                ],
                stdout=subprocess.DEVNULL,
            )
        meter = CpuMeter()
        t0 = time.perf_counter()
        answer = push(webhook, repo.url, sha, timeout=120)
        answered = time.perf_counter() - t0
        woken = len(answer.json().get("refreshed") or [])
        change, change_done, change_stuck = until_synced(sha, "one commit, every app")
        change += answered
        h_cpu = meter.stop()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)

        rss = sum(rss_mib(pid) for pid in operator.service.pids())
        rss_after = rss
        polled, samples = 0, [rss]
        if args.soak:
            # Every app polled at --soak-poll (Argo's default 3 minutes) for --soak seconds:
            # the RSS each minute, and how many reconciles the polls made.
            before = {a["metadata"]["name"]: a["status"].get("reconciledAt") for a in apps()}
            for name in before:
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    "applications",
                    name,
                    {"spec": {"pollInterval": args.soak_poll}},
                )
            end = time.monotonic() + args.soak
            with console.status(f"{args.soak:.0f} s of polls every {args.soak_poll}"):
                while time.monotonic() < end:
                    time.sleep(min(60.0, max(0.0, end - time.monotonic())))  # a sample a minute
                    samples.append(sum(rss_mib(pid) for pid in operator.service.pids()))
            rss_after = samples[-1]
            polled = sum(
                a["status"].get("reconciledAt") != before.get(a["metadata"]["name"]) for a in apps()
            )

        table = Table("figure", "measured", "target", title=f"{n} Applications x {m} objects")
        table.add_row(
            "created at once (API server writes)", f"{created:.1f} s ({n / created:.0f}/s)", ""
        )
        table.add_row(
            "cold start: Synced / stuck",
            f"{cold_done}/{n} in {cold:.1f} s ({cold_done / cold:.1f} apps/s)",
            "all, none stuck",
        )
        table.add_row("push webhook's answer", f"{answered:.2f} s ({woken} woken)", "< 1 s")
        table.add_row(
            "one commit, every app: Herd / kubectl",
            f"{change:.1f} s / {k_change:.1f} s = {change / k_change:.2f}x"
            f" ({change_done}/{n} Synced)",
            "<= 1.5x",
        )
        # Where the commit's time went, beside kubectl's: each changed object costs the API
        # server a dry run (the compare: a bad commit applies nothing) and an apply, where
        # kubectl sends the apply alone.
        objects = n * m
        k_api, h_api = k_cpu[0].get("API server", 0.0), h_cpu[0].get("API server", 0.0)
        table.add_row("CPU-s during kubectl's apply", summary(*k_cpu), "")
        table.add_row("CPU-s during Herd's commit", summary(*h_cpu), "")
        table.add_row(
            "API server CPU-ms per object: Herd / kubectl",
            f"{h_api / objects * 1000:.2f} / {k_api / objects * 1000:.2f}"
            f" = {h_api / max(k_api, 1e-9):.2f}x",
            "dry run + apply: ~2x",
        )
        table.add_row(
            "operator CPU-ms per app (renders and git included)",
            f"{h_cpu[0].get('operator', 0.0) / n * 1000:.1f}",
            "",
        )
        table.add_row(
            "operator RSS (MiB)",
            f"{rss:.0f}"
            + (
                f", {rss_after:.0f} after {args.soak:.0f} s of polls (max {max(samples):.0f};"
                f" {polled}/{n} apps polled)"
                if args.soak
                else ""
            ),
            "<= 300, flat",
        )
        console.print(table)
        for title, stuck in (("cold start", cold_stuck), ("the commit", change_stuck)):
            for message, count in stuck.most_common(5):
                console.print(f"[red]{title}: {count} x {message}[/]")


if __name__ == "__main__":
    main()
