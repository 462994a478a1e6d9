"""What objects that no Application tracks cost the operator (issue 31 N8): an Application of
a few ConfigMaps, then `--foreign` ConfigMaps of `--size` bytes each (default 150 of 0.8 MB)
made by someone else in its destination namespace. Prints the operator's RSS before, once
they have arrived through its watches and a compare has run, and after a restart (its first
compare lists the namespace).

    uv run python bench/foreign.py [--foreign 150] [--size 800000]

Runs its own embedded control plane, a real bare repository and the operator process (under
its chart's ServiceAccount, as on EKS).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import (  # bench/ is on sys.path when a script runs
    bench_project,
    gitops_operator,
    kept_on_failure,
    push,
    rss_mib,
    sync_namespace,
)
from kubernetes import client
from rich.console import Console
from rich.table import Table

from herd_core.constants import GROUP, VERSION
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.process import wait_until
from herd_devkit.settings import get_settings
from herd_devkit.stack import Stack

NS = "app"
console = Console()


def configmaps(count: int, version: str) -> str:
    return "\n---\n".join(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i}"},
                "data": {"v": version},
            }
        )
        for i in range(count)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--foreign", type=int, default=150, help="untracked ConfigMaps")
    parser.add_argument("--size", type=int, default=800_000, help="bytes of data in each")
    parser.add_argument("--settle", type=float, default=10, help="seconds before each RSS")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herd-bench-foreign-"))
    built = Stack(root=tmp, settings=get_settings())
    with kept_on_failure(built):
        with console.status("starting control plane and operator"):
            cp = built.cluster("bench")
            api = built.client(cp.kubeconfig)
            built.install_crds(api)
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            sync_namespace(api, NS)
            bench_project(api, [NS])
            operator, webhook = gitops_operator(built, api, cp, [NS], HERD_APP_TICK="1")
            repo = Repo.create(tmp / "repo", {"app/cms.yaml": configmaps(5, "v0")})

        def synced(sha: str) -> bool:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "applications", NS)
            st = obj.get("status") or {}  # type: ignore[union-attr]
            return (st.get("sync") or {}).get("status") == "Synced" and st["sync"].get(
                "revision"
            ) == sha

        def commit(version: str) -> None:
            """A commit, announced through the webhook; back once it is applied."""
            sha = repo.commit("dev", version, {"app/cms.yaml": configmaps(5, version)})
            push(webhook, repo.url, sha)
            wait_until(lambda: synced(sha), 300, interval=0.2)

        def rss() -> float:
            time.sleep(args.settle)
            return sum(rss_mib(pid) for pid in operator.service.pids())

        with console.status("the Application's first sync"):
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                "applications",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Application",
                    "metadata": {"name": NS},
                    "spec": {
                        "project": "bench",
                        "source": {"repoURL": repo.url, "targetRevision": "dev", "path": "app"},
                        "destination": {"namespace": NS},
                        "pollInterval": "1h",
                        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
                    },
                },
            )
            wait_until(lambda: synced(repo.head("dev")), 120, interval=0.2)
            commit("v1")
            before = rss()

        with console.status(f"{args.foreign} foreign ConfigMaps of {args.size} bytes"):
            blob = "x" * args.size
            for i in range(args.foreign):
                core.create_namespaced_config_map(
                    NS, {"metadata": {"name": f"foreign-{i:03d}"}, "data": {"blob": blob}}
                )
            commit("v2")
            watched = rss()

        with console.status("operator restarted"):
            operator.stop()
            operator.start()
            commit("v3")
            listed = rss()

        table = Table("operator RSS (MiB)", "value", title="Foreign objects in a destination")
        table.add_row("5 tracked ConfigMaps, nothing else", f"{before:.0f}")
        mb = args.foreign * args.size / 1e6
        table.add_row(
            f"+ {args.foreign} foreign ConfigMaps ({mb:.0f} MB), watched", f"{watched:.0f}"
        )
        table.add_row("after a restart (listed)", f"{listed:.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
