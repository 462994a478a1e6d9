"""The cost model's arithmetic on a fixture environment with round prices, and what the
inventory reads from eksctl configs and rendered objects. Pure: no helm, no cluster."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
import yaml

from herd_devkit.cost import config, prices
from herd_devkit.cost.inventory import InventoryError, from_eksctl, from_objects, gib
from herd_devkit.cost.model import (
    Environment,
    LoadBalancer,
    NodeGroup,
    Volume,
    X,
    changes,
    estimate,
    summary,
)

from ..helpers import ROOT

USAGE = config.Usage.model_validate(
    {
        "signups": 12_000,  # 2,000 over the free 10,000
        "emails": 10_000,
        "sqsRequests": 1_500_000,  # 500,000 over the free million
        "dynamodbWrites": 1_000_000,
        "dynamodbReads": 2_000_000,
        "natGigabytes": 100,
        "albLcus": 2,
        "nlbLcus": 1,
        "logGigabytes": 10,
    }
)


def table(**over: Any) -> prices.PriceTable:
    """Round prices, so each expected figure below can be checked by hand."""
    raw = yaml.safe_load((ROOT / "devkit/src/herd_devkit/cost/prices/eu-west-1.yaml").read_text())
    raw.update(
        hoursPerMonth=700,
        ec2={"m6i.large": 0.1, "m6i.xlarge": 0.2},
        ebs={"gp3": 0.08, "gp2": 0.1, "st1": 0.05, "sc1": 0.02},
        eks={"clusterHour": 0.1},
        elb={
            "albHour": 0.02,
            "albLcuHour": 0.01,
            "nlbHour": 0.03,
            "nlbLcuHour": 0.005,
            "clbHour": 0.025,
        },
        vpc={"natGatewayHour": 0.05, "natGatewayGigabyte": 0.05, "publicIpv4Hour": 0.005},
        cognito={"mau": 0.015, "freeMau": 10_000},
        ses={"email": 0.0001},
        sqs={"request": 0.0000004, "freeRequests": 1_000_000},
        dynamodb={"writeRequest": 0.000001, "readRequest": 0.0000002},
        cloudwatch={"alarmMonth": 0.1, "logsIngestGigabyte": 0.5},
    )
    raw.update(over)
    return prices.PriceTable.model_validate(raw)


def fixture_env(nodes: int = 2, volumes: tuple[Volume, ...] = ()) -> Environment:
    return Environment(
        name="fixture",
        region="eu-west-1",
        availability_zones=3,
        node_groups=(NodeGroup("ng-1", "m6i.large", nodes, 50, "gp3"),),
        volumes=(Volume("db/data-pg-0", 20, "gp3"), *volumes),
        load_balancers=(
            LoadBalancer("alb", "web/site", True, "ALB of Ingress web/site"),
            LoadBalancer("nlb", "mq/mqtt", False, "NLB of Service mq/mqtt"),
        ),
        nat_gateways=1,
        nat_setting="Single",
        control_plane_logs=True,
        usage=USAGE,
    )


def test_each_line_and_the_total_on_a_fixture_environment() -> None:
    est = estimate(fixture_env(), table())
    got = {i.key: i.monthly for i in est.items}
    want = {
        "eks": "70.00",  # 700 h x 0.10
        "nodes/ng-1": "140.00",  # 2 x 700 h x 0.10
        "nodes/ng-1/root": "8.00",  # 2 x 50 GiB x 0.08
        "pvc/db/data-pg-0": "1.60",  # 20 GiB x 0.08
        "alb/web/site": "28.00",  # 700 h x (0.02 + 2 LCU x 0.01)
        "nlb/mq/mqtt": "24.50",  # 700 h x (0.03 + 1 x 0.005)
        "nat": "35.00",  # 1 x 700 h x 0.05
        "nat/data": "5.00",  # 100 GB x 0.05
        "ipv4": "14.00",  # (1 NAT + 1 public LB x 3 AZs) x 700 h x 0.005; the NLB is internal
        "logs": "5.00",  # 10 GB x 0.50
        "alarm": "0.10",
        "cognito": "30.00",  # (12,000 - 10,000 free) x 0.015
        "ses": "1.00",  # 10,000 x 0.0001
        "sqs": "0.20",  # (1.5M - 1M free) x 0.0000004
        "dynamodb/writes": "1.00",  # 1M x 0.000001
        "dynamodb/reads": "0.40",  # 2M x 0.0000002
    }
    assert got == {k: Decimal(v) for k, v in want.items()}
    assert est.total == Decimal("363.80") == sum(Decimal(v) for v in want.values())
    as_json = est.as_dict()
    assert as_json["total"] == 363.8 and as_json["pricesAsOf"] == est.prices_as_of
    assert [i["key"] for i in as_json["items"]] == list(want)


def test_cents_are_rounded_per_line_so_lines_add_up() -> None:
    # 0.1124 x 730 = 82.052 per node: 3 nodes are 246.156 → 246.16 (half up), not 246.15.
    est = estimate(fixture_env(nodes=3), table(ec2={"m6i.large": 0.1124}, hoursPerMonth=730))
    assert next(i for i in est.items if i.key == "nodes/ng-1").monthly == Decimal("246.16")
    assert est.total == sum(i.monthly for i in est.items)


def test_a_node_and_a_pvc_more_change_exactly_their_price() -> None:
    before = estimate(fixture_env(nodes=2), table())
    after = estimate(fixture_env(nodes=3, volumes=(Volume("db/scratch", 50, "gp3"),)), table())
    assert [c.text for c in changes(before, after)] == [
        f"+$70.00/month: node group ng-1 2 → 3 {X} m6i.large",
        f"+$4.00/month: root volumes of node group ng-1 2 → 3 {X} 50 GiB gp3",
        "+$4.00/month: PVC db/scratch 50 GiB gp3 (new)",
    ]
    assert after.total - before.total == Decimal("78.00")
    assert summary(before, after)[0].startswith(
        "Monthly cost of fixture: $363.80 → $441.80 (+$78.00/month; eu-west-1 prices as of"
    )
    # Back again: the same lines with the opposite sign, the PVC removed.
    assert [c.text for c in changes(after, before)] == [
        f"-$70.00/month: node group ng-1 3 → 2 {X} m6i.large",
        f"-$4.00/month: root volumes of node group ng-1 3 → 2 {X} 50 GiB gp3",
        "-$4.00/month: PVC db/scratch 50 GiB gp3 (removed)",
    ]
    assert summary(before, before) == ["Monthly cost of fixture: unchanged at $363.80"]


def test_a_changed_instance_type_or_volume_size_says_both_sides() -> None:
    before = estimate(fixture_env(), table())
    env = fixture_env()
    bigger = Environment(
        **{
            **env.__dict__,
            "node_groups": (NodeGroup("ng-1", "m6i.xlarge", 2, 50, "gp3"),),
            "volumes": (Volume("db/data-pg-0", 100, "gp3"),),
        }
    )
    texts = [c.text for c in changes(before, estimate(bigger, table()))]
    assert texts == [
        f"+$140.00/month: node group ng-1 2 {X} m6i.large → 2 {X} m6i.xlarge",
        "+$6.40/month: PVC db/data-pg-0 20 → 100 GiB gp3",
    ]


def test_a_price_the_table_lacks_is_a_clear_error() -> None:
    env = fixture_env()
    odd = Environment(**{**env.__dict__, "node_groups": (NodeGroup("x", "z9.huge", 1, 8, "gp3"),)})
    with pytest.raises(prices.PriceError, match=r"no price for instance type z9\.huge"):
        estimate(odd, table())
    with pytest.raises(prices.PriceError, match="no price table for region us-east-1"):
        prices.load("us-east-1")


def test_the_pinned_table_is_dated_sourced_and_prices_what_the_clusters_run() -> None:
    path = ROOT / "devkit/src/herd_devkit/cost/prices/eu-west-1.yaml"
    text = path.read_text()
    assert re.search(r"^# Source: ", text, re.M)
    assert "https://aws.amazon.com/ec2/pricing/on-demand/" in text
    loaded = prices.load("eu-west-1")
    assert loaded.region == "eu-west-1" and loaded.currency == "USD"
    assert loaded.as_of.year >= 2025
    for env in ("dev", "prod"):
        eksctl = yaml.safe_load((ROOT / "clusters" / env / "eksctl.yaml").read_text())
        cluster = from_eksctl(eksctl)
        assert cluster["region"] == "eu-west-1"
        for ng in cluster["node_groups"]:
            assert loaded.instance_hour(ng.instance_type) > 0
            assert loaded.volume_month(ng.volume_type) > 0
        assert config.load(ROOT, env).billing_alarm.threshold_usd > 0


def test_eksctl_node_groups_nat_and_defaults() -> None:
    cluster = from_eksctl(
        {
            "metadata": {"region": "eu-west-1"},
            "availabilityZones": ["a", "b"],
            "vpc": {"nat": {"gateway": "HighlyAvailable"}},
            "managedNodeGroups": [
                {"name": "a", "instanceType": "m6i.large", "desiredCapacity": 4, "minSize": 1},
                {"name": "b", "instanceTypes": ["m6i.xlarge", "m7i.xlarge"], "minSize": 3},
                {"name": "c", "volumeSize": 20, "volumeType": "gp2"},
            ],
        }
    )
    assert cluster["nat_gateways"] == 2 and cluster["availability_zones"] == 2
    assert cluster["control_plane_logs"] is False
    assert cluster["node_groups"] == (
        NodeGroup("a", "m6i.large", 4, 80, "gp3"),
        NodeGroup("b", "m6i.xlarge", 3, 80, "gp3"),
        NodeGroup("c", "m5.large", 2, 20, "gp2"),  # eksctl's defaults
    )
    assert from_eksctl({})["nat_gateways"] == 1  # eksctl's default: Single
    assert from_eksctl({"vpc": {"nat": {"gateway": "Disable"}}})["nat_gateways"] == 0
    with pytest.raises(InventoryError, match=r"vpc\.nat\.gateway 'Double'"):
        from_eksctl({"vpc": {"nat": {"gateway": "Double"}}})


def obj(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


def pvc_spec(size: str, cls: str | None = "gp3") -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": {"requests": {"storage": size}}}
    if cls:
        spec["storageClassName"] = cls
    return spec


def ingress(name: str, cls: str = "alb", **ann: str) -> dict[str, Any]:
    return obj("Ingress", name, {"ingressClassName": cls}, annotations=ann)


def test_volumes_and_load_balancers_of_rendered_objects() -> None:
    scheme = {"alb.ingress.kubernetes.io/scheme": "internet-facing"}
    group = {"alb.ingress.kubernetes.io/group.name": "shared"}
    rendered = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "fast"},
            "provisioner": "ebs.csi.aws.com",
            "parameters": {"type": "gp3"},
        },
        obj("PersistentVolumeClaim", "files", pvc_spec("10G", "fast")),  # 9.3 GiB → 10
        obj("PersistentVolumeClaim", "old", pvc_spec("500Mi", None), namespace="other"),
        obj(
            "StatefulSet",
            "pg",
            {
                "replicas": 2,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": pvc_spec("1Ti")}],
            },
        ),
        ingress("a", **scheme, **group),
        ingress("b", **group),  # same group: the same ALB
        ingress("c"),  # no scheme: the controller makes an internal ALB
        ingress("d", cls="nginx"),  # not an ALB
        obj(
            "Service",
            "mqtt",
            {"type": "LoadBalancer", "loadBalancerClass": "service.k8s.aws/nlb"},
            annotations={"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"},
        ),
        obj("Service", "legacy", {"type": "LoadBalancer"}),  # in-tree: a public Classic LB
        obj("Service", "web", {"type": "ClusterIP"}),
    ]
    volumes, lbs = from_objects(("ns", o) for o in rendered)
    assert volumes == (
        Volume("ns/data-pg-0", 1024, "gp3"),
        Volume("ns/data-pg-1", 1024, "gp3"),
        Volume("ns/files", 10, "gp3"),
        Volume("other/old", 1, "gp2"),  # no class: EKS's default gp2
    )
    assert lbs == (
        LoadBalancer("alb", "group shared", True, "ALB of Ingress ns/a, ns/b"),
        LoadBalancer("alb", "ns/c", False, "ALB of Ingress ns/c"),
        LoadBalancer("nlb", "ns/mqtt", True, "NLB of Service ns/mqtt"),
        LoadBalancer("clb", "ns/legacy", True, "CLB of Service ns/legacy"),
    )


def test_what_cannot_be_priced_is_refused_with_its_name() -> None:
    with pytest.raises(InventoryError, match="PVC ns/x: storage class 'efs-sc'"):
        from_objects([("ns", obj("PersistentVolumeClaim", "x", pvc_spec("1Gi", "efs-sc")))])
    with pytest.raises(InventoryError, match="'lots' is not a quantity"):
        gib("lots")
    assert (gib("1"), gib("1Gi"), gib("1.5Gi"), gib("2Ti")) == (1, 1, 2, 2048)
