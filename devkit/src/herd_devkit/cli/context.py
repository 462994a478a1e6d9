"""Which clusters a CLI command talks to: `--kubeconfig`, else the clusters `make up` wrote
to .herd/env (dev and prod), else KUBECONFIG."""

from __future__ import annotations

from pathlib import Path

from herd_devkit.local.platform import read_env
from herd_devkit.settings import get_settings


def local_env() -> dict[str, str]:
    return read_env(get_settings().state_dir / "env")


def clusters(kubeconfig: Path | None = None) -> dict[str, Path]:
    if kubeconfig:
        return {"cluster": kubeconfig}
    env = local_env()
    found = {
        name: Path(env[f"KUBECONFIG_{name.upper()}"])
        for name in ("dev", "prod")
        if f"KUBECONFIG_{name.upper()}" in env
    }
    if found:
        return found
    s = get_settings()
    if s.kubeconfig:
        return {"cluster": s.kubeconfig}
    raise SystemExit("no cluster: pass --kubeconfig, run `make up`, or set KUBECONFIG")
