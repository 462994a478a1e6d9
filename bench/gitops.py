"""Application sync figures: commit-to-applied latency through the push webhook, and the
time of a 2,000-object app's first sync, a no-op resync and a one-object change.

    uv run python bench/gitops.py [--objects 2000] [--pushes 10]

Runs its own embedded control plane, a real bare repository and the operator process.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.process import free_port, wait_until
from herd_devkit.settings import get_settings
from herd_devkit.stack import Stack

SECRET = "bench"
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
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-gitops-"))
    built = Stack(root=tmp, settings=get_settings())
    try:
        with console.status("starting control plane and operator"):
            cp = built.cluster("bench")
            api = built.client(cp.kubeconfig)
            built.install_crds(api)
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            rbac = client.RbacAuthorizationV1Api(api)
            for ns in ("small", "big"):
                core.create_namespace({"metadata": {"name": ns}})
                # The Project's ServiceAccount, which the sync impersonates: admin of its ns.
                core.create_namespaced_service_account(ns, {"metadata": {"name": "bench"}})
                rbac.create_namespaced_role_binding(
                    ns,
                    {
                        "metadata": {"name": "bench-admin"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "admin",
                        },
                        "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": ns}],
                    },
                )
            custom.create_cluster_custom_object(
                GROUP,
                VERSION,
                "projects",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Project",
                    "metadata": {"name": "bench"},
                    "spec": {
                        "sourceRepos": ["*"],
                        "destinations": [{"namespace": "small"}, {"namespace": "big"}],
                        "destinationServiceAccounts": [
                            {"namespace": "*", "defaultServiceAccount": "bench"}
                        ],
                    },
                },
            )
            webhook = free_port()
            built.program(
                ["operator", "run"],
                "HERD_HEALTH_PORT",
                built.program_env(
                    cp.kubeconfig,
                    None,  # no AWS: Applications only
                    HERD_METRICS_PORT="0",
                    HERD_WEBHOOK_PORT=str(webhook),
                    HERD_WEBHOOK_SECRET=SECRET,
                    HERD_APP_TICK="1",
                    HERD_STATE_DIR=str(tmp / "operator"),
                    HERD_APPLICATION_NAMESPACES='["small", "big"]',
                    HERD_LOCAL_SOURCES="true",
                ),
            )
            repo = Repo.create(
                tmp / "repo",
                {
                    "small/cm.yaml": configmaps(1, "v0"),
                    "big/cms.yaml": configmaps(args.objects, "v1"),
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

        def synced(name: str, sha: str) -> bool:
            st = status(name)
            return (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get(
                "revision"
            ) == sha

        def push(sha: str) -> None:
            body = json.dumps(
                {"ref": "refs/heads/dev", "after": sha, "repository": {"clone_url": repo.url}}
            ).encode()
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            httpx.post(
                f"http://127.0.0.1:{webhook}/webhooks/github",
                content=body,
                timeout=30,
                headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig},
            )

        app("small", "small")
        wait_until(lambda: synced("small", repo.head("dev")), 120, interval=0.2)
        latencies = []
        with console.status(f"{args.pushes} commits pushed through the webhook"):
            for i in range(args.pushes):
                t0 = time.perf_counter()
                sha = repo.commit("dev", f"v{i + 1}", {"small/cm.yaml": configmaps(1, f"v{i + 1}")})
                push(sha)
                wait_until(
                    lambda v=f"v{i + 1}": (
                        (core.read_namespaced_config_map("cm-00000", "small").data or {}).get("v")
                        == v
                    ),
                    60,
                    interval=0.05,
                )
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        with console.status(f"first sync of {args.objects} objects"):
            app("big", "big")
            wait_until(lambda: synced("big", repo.head("dev")), 1800, interval=0.5)
        first = time.perf_counter() - t0

        before = status("big")["reconciledAt"]
        t0 = time.perf_counter()
        with console.status("no-op resync"):
            push(repo.head("dev"))
            wait_until(lambda: status("big").get("reconciledAt") != before, 600, interval=0.2)
            # reconciledAt is stamped when a reconcile starts; wait until it has finished.
            wait_until(lambda: synced("big", repo.head("dev")), 600, interval=0.2)
        noop = time.perf_counter() - t0

        t0 = time.perf_counter()
        with console.status("one-object change"):
            sha = repo.commit(
                "dev", "one change", {"big/cms.yaml": configmaps(args.objects, "v2", changed=7)}
            )
            push(sha)
            wait_until(lambda: synced("big", sha), 600, interval=0.2)
        one = time.perf_counter() - t0
        assert (core.read_namespaced_config_map("cm-00007", "big").data or {})["v"] == "v2"

        table = Table("figure", "value", title="Application sync (embedded control plane)")
        table.add_row(
            "commit → applied via webhook, p50 / max (s)",
            f"{statistics.median(latencies):.2f} / {max(latencies):.2f}",
        )
        table.add_row(f"first sync, {args.objects} objects (s)", f"{first:.1f}")
        table.add_row(f"no-op resync, {args.objects} objects (s)", f"{noop:.1f}")
        table.add_row(f"one-object change in {args.objects} (s)", f"{one:.1f}")
        console.print(table)
    finally:
        built.stop()


if __name__ == "__main__":
    main()
