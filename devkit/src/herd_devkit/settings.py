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
    # The local AWS (moto behind herd_devkit.local.moto_serial), read once when it starts.
    local_aws_quotas: bool = Field(
        True,
        description="Hold AWS's quotas and request rates (herd_core.quotas, as lowered or "
        "raised by HERD_AWS_QUOTAS) in front of moto, as AWS does",
    )
    local_ses_sandbox: bool = Field(
        False,
        description="Put the local SES in the sandbox: sends only to verified identities, "
        "200 a day, 1 a second (off: `make up` sends welcome emails to anyone)",
    )
    # `herd app rollback` pushes no revert to these branches (review is required there): it
    # pushes a branch of its own and prints the command that opens the change for review.
    protected_branches: list[str] = Field(
        default_factory=list, description="Branches `herd app rollback` never pushes to"
    )
    # Tests: use the cluster KUBECONFIG points at instead of an embedded one.
    use_existing_cluster: bool = Field(
        False, validation_alias=AliasChoices("HERD_USE_EXISTING_CLUSTER", "USE_EXISTING_CLUSTER")
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
