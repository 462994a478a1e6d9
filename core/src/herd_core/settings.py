"""Settings every Herd program shares: where AWS and Kubernetes are, and the names of the
resources that pass work between programs (the email queue and its table, the user pool, the
tenants namespace). Each package's own Settings class extends this one.

Standard AWS variables (AWS_ENDPOINT_URL, AWS_REGION) keep their usual names so boto3 users
feel at home; everything else of ours is prefixed HERD_.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herd_core.quotas import QUOTAS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERD_", extra="ignore")

    environment: str = Field("local", description="dev, prod or local; prefixes AWS names")

    # AWS
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("HERD_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        description="Override for every AWS service (moto in tests and `make up`)",
    )
    aws_region: str = Field(
        "eu-west-1",
        validation_alias=AliasChoices("HERD_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    aws_call_log: Path | None = Field(
        None, description="Append every AWS call (JSON lines) here; the IAM test reads it"
    )
    # Explicit keys only for moto (tests, `make up`): real environments use the default
    # credential chain (IRSA on EKS), which these never override when unset.
    aws_access_key_id: str | None = Field(None, description="Static key id, moto only")
    aws_secret_access_key: SecretStr | None = Field(None, description="Static secret, moto only")
    aws_max_attempts: int = Field(
        5, ge=1, description="Total attempts per AWS call (first try included); tests use 1"
    )
    aws_throttle_attempts: int | None = Field(
        None,
        ge=1,
        description="Attempts per AWS call while AWS throttles it (a throttled call was not "
        "made, so another try is always safe); unset: aws_max_attempts",
    )
    aws_quotas: dict[str, float] = Field(
        default_factory=dict,
        description="This account's AWS quotas where they differ from herd_core.quotas' "
        "defaults, by key: raised ones on AWS; lowered ones locally, which the local AWS "
        'then enforces (`{"cognito.app_clients_per_user_pool": 3}`)',
    )
    aws_pace_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of each AWS request-rate quota one process paces its calls to; "
        "the rest is headroom for the account's other callers",
    )
    quota_retry_delay: float = Field(
        900.0,
        gt=0,
        description="Retry of an object whose AWS resource quota is reached (QuotaExceeded), "
        "seconds: slow, as only a raised quota or a freed resource changes the outcome",
    )
    quota_refresh_interval: float = Field(
        300.0,
        gt=0,
        description="Seconds between reads of AWS quota use (the operator's herd_aws_quota_* "
        "gauges)",
    )

    # Shared resources: the operator enqueues email jobs that the worker sends.
    cognito_user_pool_id: str | None = Field(None, description="Default pool for CognitoClients")
    email_sender: str = Field("noreply@herd-itt.com", description="Verified SES sender")
    email_queue_url: str | None = Field(None, description="SQS queue of email jobs")
    email_dlq_url: str | None = Field(
        None, description="Its dead-letter queue (the worker's metric)"
    )
    email_jobs_table: str = Field(
        "herd-email-jobs", description="DynamoDB idempotency table (full name, prefix included)"
    )
    tenants_namespace: str = Field("tenants", description="Where Tenant objects live")

    # Kubernetes: in-cluster credentials when present, else this kubeconfig.
    kubeconfig: Path | None = Field(
        None, validation_alias=AliasChoices("HERD_KUBECONFIG", "KUBECONFIG")
    )

    @field_validator("aws_quotas")
    @classmethod
    def _known_quotas(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(QUOTAS))
        if unknown:
            raise ValueError(f"unknown quota keys {unknown}; known: {sorted(QUOTAS)}")
        if any(v <= 0 for v in value.values()):
            raise ValueError("quotas are positive")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
