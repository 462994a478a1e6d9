"""The arithmetic of a monthly estimate, and of the change between two. Pure: an Environment
and a PriceTable in, line items out. Money is Decimal, each line rounded to the cent, so the
lines add up to the total and a change is exactly the difference of its lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from herd_devkit.cost.config import Usage
from herd_devkit.cost.prices import PriceTable

CENT = Decimal("0.01")
X = "\u00d7"  # the multiplication sign, as in "3 x m7i.large"


def d(value: float | int | str | Decimal) -> Decimal:
    return Decimal(str(value))


def money(value: Decimal, signed: bool = False) -> str:
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    return f"{sign}${abs(value):,.2f}"


def price(value: float) -> str:
    """A unit price as the table has it: 0.0000004 rather than 4e-07, at least to the cent."""
    exact = Decimal(str(value))
    return f"{exact.quantize(CENT) if exact.as_tuple().exponent > -2 else exact:f}"  # type: ignore[operator]


def number(value: float | int | Decimal) -> str:
    return f"{int(value):,}" if value == int(value) else f"{float(value):,.2f}"


@dataclass(frozen=True)
class NodeGroup:
    name: str
    instance_type: str
    count: int
    volume_gib: int
    volume_type: str


@dataclass(frozen=True)
class Volume:
    """An EBS volume a PersistentVolumeClaim provisions (namespace/name)."""

    name: str
    gib: int
    volume_type: str


@dataclass(frozen=True)
class LoadBalancer:
    kind: Literal["alb", "nlb", "clb"]
    name: str  # ALB: its IngressGroup (or namespace/name of a lone Ingress); else the Service
    internet_facing: bool
    label: str  # what it is for a reader: "ALB of Ingress openremote/openremote"


@dataclass(frozen=True)
class Environment:
    name: str
    region: str
    availability_zones: int
    node_groups: tuple[NodeGroup, ...]
    volumes: tuple[Volume, ...]
    load_balancers: tuple[LoadBalancer, ...]
    nat_gateways: int
    nat_setting: str
    control_plane_logs: bool
    usage: Usage
    billing_alarm: bool = True


@dataclass(frozen=True)
class LineItem:
    key: str  # stable across revisions: what a change is matched on
    category: str
    label: str
    quantity: Decimal
    unit: str
    monthly: Decimal
    basis: str  # how the figure comes about, in prices of the table
    counted: bool = True  # "3 x m7i.large" rather than "20 GiB gp3"

    def amount(self, quantity: Decimal | None = None) -> str:
        q = number(self.quantity if quantity is None else quantity)
        return f"{q} {X} {self.unit}" if self.counted else f"{q} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantity"] = float(self.quantity)
        out["monthly"] = float(self.monthly)
        return out


@dataclass(frozen=True)
class Estimate:
    env: str
    region: str
    currency: str
    prices_as_of: str
    items: tuple[LineItem, ...]
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((i.monthly for i in self.items), Decimal(0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "region": self.region,
            "currency": self.currency,
            "pricesAsOf": self.prices_as_of,
            "usage": self.usage,
            "items": [i.as_dict() for i in self.items],
            "total": float(self.total),
        }


def estimate(env: Environment, prices: PriceTable) -> Estimate:
    hours = d(prices.hours_per_month)
    u = env.usage
    items: list[LineItem] = []

    def add(
        key: str,
        category: str,
        label: str,
        quantity: float | int | Decimal,
        unit: str,
        unit_price: float | Decimal,
        basis: str,
        counted: bool = True,
        free: float | int = 0,
        hourly: bool = False,
    ) -> None:
        billed = max(d(quantity) - d(free), Decimal(0))
        monthly = billed * d(unit_price) * (hours if hourly else 1)
        items.append(
            LineItem(
                key,
                category,
                label,
                d(quantity),
                unit,
                monthly.quantize(CENT, ROUND_HALF_UP),
                basis,
                counted,
            )
        )

    per_h = f"{number(hours)} h"
    add(
        "eks",
        "platform",
        "EKS control plane",
        1,
        "cluster",
        prices.eks.cluster_hour,
        f"{per_h} {X} ${price(prices.eks.cluster_hour)}/h",
        hourly=True,
    )
    for ng in env.node_groups:
        rate = prices.instance_hour(ng.instance_type)
        add(
            f"nodes/{ng.name}",
            "compute",
            f"node group {ng.name}",
            ng.count,
            ng.instance_type,
            rate,
            f"{ng.count} {X} {per_h} {X} ${price(rate)}/h",
            hourly=True,
        )
        per_gib = prices.volume_month(ng.volume_type)
        monthly_each = d(ng.volume_gib) * d(per_gib)
        add(
            f"nodes/{ng.name}/root",
            "storage",
            f"root volumes of node group {ng.name}",
            ng.count,
            f"{ng.volume_gib} GiB {ng.volume_type}",
            monthly_each,
            f"{ng.count} {X} {ng.volume_gib} GiB {X} ${price(per_gib)}/GiB-month",
        )
    for vol in env.volumes:
        per_gib = prices.volume_month(vol.volume_type)
        add(
            f"pvc/{vol.name}",
            "storage",
            f"PVC {vol.name}",
            vol.gib,
            f"GiB {vol.volume_type}",
            per_gib,
            f"{vol.gib} GiB {X} ${price(per_gib)}/GiB-month",
            counted=False,
        )
    for lb in env.load_balancers:
        if lb.kind == "alb":
            hourly = d(prices.elb.alb_hour) + d(u.alb_lcus) * d(prices.elb.alb_lcu_hour)
            basis = (
                f"{per_h} {X} (${price(prices.elb.alb_hour)}/h + {number(u.alb_lcus)} LCU {X} "
                f"${price(prices.elb.alb_lcu_hour)}/LCU-h)"
            )
        elif lb.kind == "nlb":
            hourly = d(prices.elb.nlb_hour) + d(u.nlb_lcus) * d(prices.elb.nlb_lcu_hour)
            basis = (
                f"{per_h} {X} (${price(prices.elb.nlb_hour)}/h + {number(u.nlb_lcus)} NLCU {X} "
                f"${price(prices.elb.nlb_lcu_hour)}/NLCU-h)"
            )
        else:
            hourly, basis = d(prices.elb.clb_hour), f"{per_h} {X} ${price(prices.elb.clb_hour)}/h"
        add(
            f"{lb.kind}/{lb.name}",
            "network",
            lb.label,
            1,
            "load balancer",
            hourly,
            basis,
            hourly=True,
        )
    if env.nat_gateways:
        add(
            "nat",
            "network",
            f"NAT gateways ({env.nat_setting})",
            env.nat_gateways,
            "NAT gateway",
            prices.vpc.nat_gateway_hour,
            f"{env.nat_gateways} {X} {per_h} {X} ${price(prices.vpc.nat_gateway_hour)}/h",
            hourly=True,
        )
        add(
            "nat/data",
            "network",
            "NAT data processed",
            u.nat_gigabytes,
            "GB",
            prices.vpc.nat_gateway_gigabyte,
            f"{number(u.nat_gigabytes)} GB {X} ${price(prices.vpc.nat_gateway_gigabyte)}/GB",
            counted=False,
        )
    public_lbs = sum(1 for lb in env.load_balancers if lb.internet_facing)
    addresses = env.nat_gateways + public_lbs * env.availability_zones
    if addresses:
        add(
            "ipv4",
            "network",
            "public IPv4 addresses",
            addresses,
            "address",
            prices.vpc.public_ipv4_hour,
            f"{env.nat_gateways} NAT + {public_lbs} internet-facing load balancers {X} "
            f"{env.availability_zones} AZs; {per_h} {X} ${prices.vpc.public_ipv4_hour}/h",
            hourly=True,
        )
    if env.control_plane_logs:
        logs = prices.cloudwatch.logs_ingest_gigabyte
        add(
            "logs",
            "platform",
            "EKS control-plane logs (CloudWatch)",
            u.log_gigabytes,
            "GB",
            logs,
            f"{number(u.log_gigabytes)} GB ingested {X} ${price(logs)}/GB",
            counted=False,
        )
    if env.billing_alarm:
        add(
            "alarm",
            "platform",
            "billing alarm (CloudWatch)",
            1,
            "alarm",
            prices.cloudwatch.alarm_month,
            f"${price(prices.cloudwatch.alarm_month)}/alarm-month",
        )
    add(
        "cognito",
        "services",
        "Cognito user pool",
        u.signups,
        "MAU",
        prices.cognito.mau,
        f"one MAU per signup; first {number(prices.cognito.free_mau)} free, then "
        f"${price(prices.cognito.mau)}/MAU",
        counted=False,
        free=prices.cognito.free_mau,
    )
    add(
        "ses",
        "services",
        "SES",
        u.emails,
        "emails",
        prices.ses.email,
        f"{number(u.emails)} {X} ${price(prices.ses.email)}",
        counted=False,
    )
    add(
        "sqs",
        "services",
        "SQS",
        u.sqs_requests,
        "requests",
        prices.sqs.request,
        f"first {number(prices.sqs.free_requests)} free, then ${price(prices.sqs.request)}/request",
        counted=False,
        free=prices.sqs.free_requests,
    )
    add(
        "dynamodb/writes",
        "services",
        "DynamoDB writes",
        u.dynamodb_writes,
        "write units",
        prices.dynamodb.write_request,
        f"{number(u.dynamodb_writes)} {X} ${price(prices.dynamodb.write_request)}",
        counted=False,
    )
    add(
        "dynamodb/reads",
        "services",
        "DynamoDB reads",
        u.dynamodb_reads,
        "read units",
        prices.dynamodb.read_request,
        f"{number(u.dynamodb_reads)} {X} ${price(prices.dynamodb.read_request)}",
        counted=False,
    )
    return Estimate(
        env=env.name,
        region=prices.region,
        currency=prices.currency,
        prices_as_of=prices.as_of.isoformat(),
        items=tuple(items),
        usage=u.model_dump(by_alias=True),
    )


@dataclass(frozen=True)
class Change:
    key: str
    delta: Decimal
    text: str


def changes(before: Estimate, after: Estimate) -> list[Change]:
    """What differs, line by line, largest change first; lines that cost the same are left out."""
    old = {i.key: i for i in before.items}
    new = {i.key: i for i in after.items}
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        delta = (b.monthly if b else Decimal(0)) - (a.monthly if a else Decimal(0))
        if a and b:
            if delta == 0 and a.amount() == b.amount():
                continue
            if a.unit == b.unit:
                sep = f" {X} " if b.counted else " "
                what = f"{number(a.quantity)} → {number(b.quantity)}{sep}{b.unit}"
            else:
                what = f"{a.amount()} → {b.amount()}"
            text = f"{b.label} {what}"
        elif b:
            text = f"{b.label} {b.amount()} (new)"
        else:
            assert a is not None
            text = f"{a.label} {a.amount()} (removed)"
        out.append(Change(key, delta, f"{money(delta, signed=True)}/month: {text}"))
    out.sort(key=lambda c: -abs(c.delta))
    return out


def summary(before: Estimate, after: Estimate) -> list[str]:
    """The text `herd promote` prints and the promote workflow posts on the pull request."""
    delta = after.total - before.total
    head = (
        f"Monthly cost of {after.env}: {money(before.total)} → {money(after.total)} "
        f"({money(delta, signed=True)}/month; {after.region} prices as of {after.prices_as_of})"
    )
    lines = [c.text for c in changes(before, after)]
    return (
        [head, *lines]
        if lines
        else [f"Monthly cost of {after.env}: unchanged at {money(after.total)}"]
    )
