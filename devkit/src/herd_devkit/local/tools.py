"""Where the binaries built by `make tools` live (hack/build-tools.sh writes this layout).

    <tools_dir>/k8s/<version>-<os>-<arch>/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
    <tools_dir>/helm/<version>-<os>-<arch>/helm
    <tools_dir>/kwok/<version>-<os>-<arch>/{kwok,stages.yaml}
    <tools_dir>/uv/<version>/bin/uv

KUBEBUILDER_ASSETS, when set, wins for the Kubernetes binaries (the envtest convention).
Otherwise the newest version in the cache is used, so the CLI works without make.
"""

from __future__ import annotations

from pathlib import Path

from herd_devkit.settings import Settings, get_settings

CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


class ToolsMissing(RuntimeError):
    pass


def _version_key(path: Path) -> tuple[int, ...]:
    version = path.name.split("-", 1)[0]
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _newest(folder: Path, binary: str, pattern: str = "*-*") -> Path | None:
    candidates = [d for d in folder.glob(pattern) if (d / binary).is_file()]
    return max(candidates, key=_version_key) if candidates else None


def k8s_assets(settings: Settings | None = None) -> Path:
    s = settings or get_settings()
    if s.kubebuilder_assets:
        folder = s.kubebuilder_assets
    else:
        found = _newest(s.tools_dir / "k8s", "kube-apiserver")
        if found is None:
            raise ToolsMissing(
                f"no Kubernetes binaries under {s.tools_dir / 'k8s'}: run `make tools` "
                "or set KUBEBUILDER_ASSETS"
            )
        folder = found
    missing = [b for b in CONTROL_PLANE_BINARIES if not (folder / b).is_file()]
    if missing:
        raise ToolsMissing(f"{folder} lacks {', '.join(missing)}: run `make tools`")
    return folder


def kwok(settings: Settings | None = None) -> tuple[Path, Path] | None:
    """kwok and its stages file (fake nodes and pods), or None when not built."""
    s = settings or get_settings()
    found = _newest(s.tools_dir / "kwok", "kwok")
    if found is None or not (found / "stages.yaml").is_file():
        return None
    return found / "kwok", found / "stages.yaml"


def binary(name: str, settings: Settings | None = None) -> Path:
    """Path to etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm
    or uv."""
    s = settings or get_settings()
    if name == "helm":
        if s.helm:
            return s.helm
        found = _newest(s.tools_dir / "helm", "helm")
        if found is None:
            raise ToolsMissing(f"no helm under {s.tools_dir / 'helm'}: run `make tools`")
        return found / "helm"
    if name == "uv":
        found = _newest(s.tools_dir / "uv", "bin/uv", pattern="*")
        if found is None:
            raise ToolsMissing(f"no uv under {s.tools_dir / 'uv'}: run `make uv`")
        return found / "bin" / "uv"
    path = k8s_assets(s) / name
    if not path.is_file():
        raise ToolsMissing(f"{path} is missing: run `make tools`")
    return path


def helm_env(settings: Settings | None = None) -> dict[str, str]:
    """What a local operator needs to find helm and kubectl (kustomize): images put them on
    PATH, here they are the cache's."""
    return {
        "HERD_HELM": str(binary("helm", settings)),
        "HERD_KUBECTL": str(binary("kubectl", settings)),
    }
