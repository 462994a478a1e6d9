"""The dev toolkit's settings: the operator's (it runs one) plus where the local tools live."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field

from herd_operator.settings import Settings as OperatorSettings


class Settings(OperatorSettings):
    # Local platform: binaries built by `make tools`, state of `herd cluster up`.
    tools_dir: Path = Field(Path.home() / ".cache" / "herd" / "tools")
    kubebuilder_assets: Path | None = Field(
        None,
        validation_alias=AliasChoices("HERD_KUBEBUILDER_ASSETS", "KUBEBUILDER_ASSETS"),
        description="Folder with etcd, kube-apiserver, kube-controller-manager (envtest style)",
    )
    # Tests: use the cluster KUBECONFIG points at instead of an embedded one.
    use_existing_cluster: bool = Field(
        False, validation_alias=AliasChoices("HERD_USE_EXISTING_CLUSTER", "USE_EXISTING_CLUSTER")
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
