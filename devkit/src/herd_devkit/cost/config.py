"""clusters/<env>/cost.yaml: what git cannot say about an environment's cost (its usage, at
stated assumptions) and the threshold of its billing alarm."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FILE = "cost.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Usage(_Strict):
    """A month's usage of the usage-priced services."""

    signups: int = Field(ge=0, description="Tenants created; each is one Cognito MAU")
    emails: int = Field(ge=0, description="Emails SES sends")
    sqs_requests: int = Field(alias="sqsRequests", ge=0)
    dynamodb_writes: int = Field(alias="dynamodbWrites", ge=0)
    dynamodb_reads: int = Field(alias="dynamodbReads", ge=0)
    nat_gigabytes: float = Field(alias="natGigabytes", ge=0)
    alb_lcus: float = Field(alias="albLcus", ge=0, description="Average LCUs of each ALB")
    nlb_lcus: float = Field(alias="nlbLcus", ge=0, description="Average NLCUs of each NLB")
    log_gigabytes: float = Field(alias="logGigabytes", ge=0)


class BillingAlarm(_Strict):
    threshold_usd: float = Field(alias="thresholdUsd", gt=0)


class CostConfig(_Strict):
    billing_alarm: BillingAlarm = Field(alias="billingAlarm")
    usage: Usage


class ConfigError(Exception):
    """The environment's cost.yaml is missing or wrong: the message says which and why."""


def load(repo: Path, env: str) -> CostConfig:
    path = repo / "clusters" / env / FILE
    if not path.is_file():
        raise ConfigError(f"clusters/{env}/{FILE} does not exist")
    try:
        return CostConfig.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as err:
        raise ConfigError(f"clusters/{env}/{FILE}: {err}") from err
