"""Application sync figures: commit-to-applied latency through the push webhook; the time of
a 2,000-object app's first sync, no-op resync and one-object change, each beside
`kubectl apply --server-side` of the same objects in the same run (Herd's time as a ratio of
kubectl's); self-heal latency of a hand edit; the operator's RSS with five such apps.

    uv run python bench/gitops.py [--objects 2000] [--pushes 10] [--apps 5]

Runs its own embedded control plane, a real bare repository and the operator process (under
its chart's ServiceAccount, as on EKS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (  # bench/ is on sys.path when a script runs
    bench_project,
    gitops_operator,
    kept_on_failure,
    kubectl_apply,
    push,
    rss_mib,
    sync_namespace,
)
from kubernetes import client, watch
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.process import wait_until
from herd_devkit.settings import get_settings
from herd_devkit.stack import Stack

console = Console()


def configmaps(count: int, version: str, changed: int | None = None) -> str:
    docs = []
    for i in range(count):
        value = version if changed is None or i == changed else "v1"
        docs.append(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i:05d}"},
                    "data": {"v": value},
                }
            )
        )
    return "\n---\n".join(docs) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--apps", type=int, default=5, help="apps of --objects for the RSS")
    parser.add_argument("--heals", type=int, default=5, help="hand edits for self-heal")
    parser.add_argument(
        "--sync-concurrency", type=int, default=None, help="HERD_APP_SYNC_CONCURRENCY"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-gitops-"))
    built = Stack(root=tmp, settings=get_settings())
    with kept_on_failure(built):
        with console.status("starting control plane and operator"):
            cp = built.cluster("bench")
            api = built.client(cp.kubeconfig)
            built.install_crds(api)
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            extra = [f"big{i}" for i in range(2, args.apps + 1)]
            for ns in ("small", "big", "kubectl", *extra):
                sync_namespace(api, ns)
            bench_project(api, ["small", "big", *extra])
            operator, webhook = gitops_operator(
                built,
                api,
                cp,
                ["small", "big", *extra],
                HERD_APP_TICK="1",
                **(
                    {"HERD_APP_SYNC_CONCURRENCY": str(args.sync_concurrency)}
                    if args.sync_concurrency
                    else {}
                ),
            )
            repo = Repo.create(
                tmp / "repo",
                {
                    "small/cm.yaml": configmaps(1, "v0"),
                    "big/cms.yaml": configmaps(args.objects, "v1"),
                    **{f"{ns}/cms.yaml": configmaps(args.objects, "v1") for ns in extra},
                },
            )

        def app(name: str, path: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                name,
                "applications",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Application",
                    "metadata": {"name": name},
                    "spec": {
                        "project": "bench",
                        "source": {"repoURL": repo.url, "targetRevision": "dev", "path": path},
                        "destination": {"namespace": name},
                        "pollInterval": "1h",
                        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                    },
                },
            )

        def status(name: str) -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, name, "applications", name)
            return dict(obj.get("status") or {})  # type: ignore[union-attr]

        def is_synced(st: dict[str, Any], sha: str) -> bool:
            return (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get(
                "revision"
            ) == sha

        def synced(name: str, sha: str) -> bool:
            return is_synced(status(name), sha)

        def until(name: str, ok: Callable[[dict[str, Any]], bool], timeout: float) -> None:
            """Until the Application's status is `ok`, from a watch: polling would GET its
            whole status (2,000 resources) many times a second from the API server it is
            timing, and round the figure up to the poll interval."""
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                w = watch.Watch()
                for event in w.stream(  # each watch starts with the current object
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    name,
                    "applications",
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(left)),
                ):
                    if event["type"] == "ERROR":
                        break  # watch again
                    if ok(event["object"].get("status") or {}):
                        w.stop()
                        return
            raise TimeoutError(f"Application {name}: not there after {timeout} s")

        app("small", "small")
        wait_until(lambda: synced("small", repo.head("dev")), 120, interval=0.2)
        latencies = []
        with console.status(f"{args.pushes} commits pushed through the webhook"):
            for i in range(args.pushes):
                t0 = time.perf_counter()
                sha = repo.commit("dev", f"v{i + 1}", {"small/cm.yaml": configmaps(1, f"v{i + 1}")})
                push(webhook, repo.url, sha)
                wait_until(
                    lambda v=f"v{i + 1}": (
                        (core.read_namespaced_config_map("cm-00000", "small").data or {}).get("v")
                        == v
                    ),
                    60,
                    interval=0.05,
                )
                latencies.append(time.perf_counter() - t0)

        # kubectl apply --server-side of the very same objects, same cluster, each right before
        # Herd's own figure (the machine's load changes within a run).
        files = tmp / "kubectl"
        files.mkdir()
        (files / "v1.yaml").write_text(configmaps(args.objects, "v1"))
        (files / "v2.yaml").write_text(configmaps(args.objects, "v2", changed=7))

        def kubectl(name: str) -> float:
            return kubectl_apply(cp.kubeconfig, "kubectl", files / name)

        with console.status("kubectl apply --server-side, first"):
            k_first = kubectl("v1.yaml")
        t0 = time.perf_counter()
        with console.status(f"first sync of {args.objects} objects"):
            app("big", "big")
            until("big", lambda st: is_synced(st, repo.head("dev")), 1800)
        first = time.perf_counter() - t0

        with console.status("kubectl apply --server-side, no-op"):
            k_noop = kubectl("v1.yaml")
        before = status("big")["reconciledAt"]
        t0 = time.perf_counter()
        with console.status("no-op resync"):
            push(webhook, repo.url, repo.head("dev"))
            # reconciledAt is the start of the reconcile, written with its result at the end.
            until(
                "big",
                lambda st: st.get("reconciledAt") != before and is_synced(st, repo.head("dev")),
                600,
            )
        noop = time.perf_counter() - t0

        with console.status("kubectl apply --server-side, one change"):
            k_one = kubectl("v2.yaml")
        t0 = time.perf_counter()
        with console.status("one-object change"):
            sha = repo.commit(
                "dev", "one change", {"big/cms.yaml": configmaps(args.objects, "v2", changed=7)}
            )
            push(webhook, repo.url, sha)
            until("big", lambda st: is_synced(st, sha), 600)
        one = time.perf_counter() - t0
        assert (core.read_namespaced_config_map("cm-00007", "big").data or {})["v"] == "v2"

        # A hand edit of one of the 2,000: how long until selfHeal has put git's back.
        heals = []
        with console.status("self-heal of hand edits"):
            for i in range(args.heals):
                name = f"cm-{(i * 97) % args.objects:05d}"
                want = (core.read_namespaced_config_map(name, "big").data or {})["v"]
                t0 = time.perf_counter()
                core.patch_namespaced_config_map(name, "big", {"data": {"v": "hand"}})
                wait_until(
                    lambda n=name, w=want: (
                        (core.read_namespaced_config_map(n, "big").data or {}).get("v") == w
                    ),
                    600,
                    interval=0.05,
                )
                heals.append(time.perf_counter() - t0)

        # Operator memory with --apps Applications of --objects each.
        with console.status(f"{args.apps} apps of {args.objects} objects"):
            for ns in extra:
                app(ns, ns)
            for ns in extra:
                wait_until(lambda n=ns: synced(n, repo.head("dev")), 1800, interval=1)
            rss = sum(rss_mib(pid) for pid in operator.service.pids())

        def ratio(herd: float, kube: float) -> str:
            return f"{herd:.2f} s / {kube:.2f} s = {herd / kube:.2f}x"

        table = Table("figure", "value", title="Application sync (embedded control plane)")
        table.add_row(
            "commit → applied via webhook, p50 / max (s)",
            f"{statistics.median(latencies):.2f} / {max(latencies):.2f}",
        )
        n = args.objects
        table.add_row(f"first sync, {n} objects: Herd / kubectl", ratio(first, k_first))
        table.add_row(f"no-op resync, {n} objects: Herd / kubectl", ratio(noop, k_noop))
        table.add_row(f"one-object change in {n}: Herd / kubectl", ratio(one, k_one))
        table.add_row(
            f"self-heal of a hand edit in {n}, p50 / max (s)",
            f"{statistics.median(heals):.2f} / {max(heals):.2f}",
        )
        table.add_row(f"operator RSS, {args.apps} apps x {n} objects tracked (MiB)", f"{rss:.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
