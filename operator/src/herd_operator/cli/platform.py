"""`herd up` / `herd down`: the local platform that `make up` runs."""

from __future__ import annotations

from rich.console import Console

from herd_operator.local.controlplane import ControlPlane
from herd_operator.local.moto_server import MotoServer
from herd_operator.settings import get_settings

CLUSTERS = ("dev", "prod")
console = Console()


def up() -> None:
    """Start the local platform: clusters dev and prod and a moto server."""
    s = get_settings()
    env: dict[str, str] = {}
    for name in CLUSTERS:
        cp = ControlPlane.named(name, tie_to_parent=False)
        with console.status(f"cluster [bold]{name}[/]"):
            cp.start()
        env[f"KUBECONFIG_{name.upper()}"] = str(cp.kubeconfig)
        console.print(f"[green]✓[/] cluster {name}: {cp.server}")
    moto = MotoServer(root=(s.state_dir / "moto").absolute(), tie_to_parent=False)
    with console.status("moto server"):
        moto.start()
    env["AWS_ENDPOINT_URL"] = moto.url
    console.print(f"[green]✓[/] moto (AWS) at {moto.url}")
    env_file = s.state_dir / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    console.print(f"\nEnvironment written to {env_file}. Try:")
    console.print(f"  kubectl --kubeconfig {env['KUBECONFIG_DEV']} get ns")


def down() -> None:
    """Stop everything `herd up` started."""
    s = get_settings()
    MotoServer(root=(s.state_dir / "moto").absolute()).stop()
    for folder in sorted(p for p in (s.state_dir / "clusters").glob("*") if p.is_dir()):
        ControlPlane.named(folder.name).stop()
        console.print(f"[green]✓[/] cluster {folder.name} stopped")
    console.print("[green]✓[/] moto stopped")
