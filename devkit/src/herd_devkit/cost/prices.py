"""The pinned price table of a region (prices/<region>.yaml): no network, ever."""

from __future__ import annotations

from datetime import date
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Ebs(_Strict):
    gp3: float
    gp2: float
    st1: float
    sc1: float


class Eks(_Strict):
    cluster_hour: float = Field(alias="clusterHour")


class Elb(_Strict):
    alb_hour: float = Field(alias="albHour")
    alb_lcu_hour: float = Field(alias="albLcuHour")
    nlb_hour: float = Field(alias="nlbHour")
    nlb_lcu_hour: float = Field(alias="nlbLcuHour")
    clb_hour: float = Field(alias="clbHour")


class Vpc(_Strict):
    nat_gateway_hour: float = Field(alias="natGatewayHour")
    nat_gateway_gigabyte: float = Field(alias="natGatewayGigabyte")
    public_ipv4_hour: float = Field(alias="publicIpv4Hour")


class Cognito(_Strict):
    mau: float
    free_mau: int = Field(alias="freeMau")


class Ses(_Strict):
    email: float


class Sqs(_Strict):
    request: float
    free_requests: int = Field(alias="freeRequests")


class DynamoDb(_Strict):
    write_request: float = Field(alias="writeRequest")
    read_request: float = Field(alias="readRequest")


class CloudWatch(_Strict):
    alarm_month: float = Field(alias="alarmMonth")
    logs_ingest_gigabyte: float = Field(alias="logsIngestGigabyte")


class PriceTable(_Strict):
    region: str
    currency: str
    as_of: date = Field(alias="asOf")
    hours_per_month: float = Field(alias="hoursPerMonth", gt=0)
    ec2: dict[str, float]
    ebs: Ebs
    eks: Eks
    elb: Elb
    vpc: Vpc
    cognito: Cognito
    ses: Ses
    sqs: Sqs
    dynamodb: DynamoDb
    cloudwatch: CloudWatch

    def instance_hour(self, instance_type: str) -> float:
        try:
            return self.ec2[instance_type]
        except KeyError:
            raise PriceError(
                f"no price for instance type {instance_type} in the {self.region} table "
                f"(has {', '.join(sorted(self.ec2))}); add it (README: refresh the table)"
            ) from None

    def volume_month(self, volume_type: str) -> float:
        price = self.ebs.model_dump().get(volume_type)
        if price is None:
            raise PriceError(f"no price for EBS volume type {volume_type} in {self.region}")
        return float(price)


class PriceError(Exception):
    """A price the table does not have, or a table that does not parse."""


def regions() -> list[str]:
    folder = resources.files(__package__).joinpath("prices")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load(region: str) -> PriceTable:
    if region not in regions():
        raise PriceError(f"no price table for region {region} (have: {', '.join(regions())})")
    text = resources.files(__package__).joinpath("prices", f"{region}.yaml").read_text()
    try:
        table = PriceTable.model_validate(yaml.safe_load(text))
    except ValidationError as err:
        raise PriceError(f"prices/{region}.yaml: {err}") from err
    if table.region != region:
        raise PriceError(f"prices/{region}.yaml says region {table.region}")
    return table
