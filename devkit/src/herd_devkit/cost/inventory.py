"""What an environment runs, as far as the bill goes, read from a repository tree: the
eksctl config (node groups, NAT, AZs, logs), every app rendered exactly as the sync engine
renders it (PVCs, ALB Ingresses, LoadBalancer Services), and clusters/<env>/cost.yaml."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from herd_devkit.cost import config
from herd_devkit.cost.model import Environment, LoadBalancer, NodeGroup, Volume
from herd_devkit.validate import environment_apps

# eksctl's defaults for what a config leaves out.
EKSCTL_NODES, EKSCTL_VOLUME_GIB, EKSCTL_VOLUME_TYPE = 2, 80, "gp3"
EKSCTL_INSTANCE_TYPE, EKSCTL_AZS = "m5.large", 3
# EKS's own StorageClass (in-tree EBS), used by a PVC that names none.
DEFAULT_STORAGE_CLASS = "gp2"
EBS_TYPES = ("gp3", "gp2", "st1", "sc1", "io1", "io2")
EBS_PROVISIONERS = {"ebs.csi.aws.com": "gp3", "kubernetes.io/aws-ebs": "gp2"}  # default type
NLB_TYPES = ("external", "nlb", "nlb-ip")
_ANN = "service.beta.kubernetes.io/aws-load-balancer-"
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS: dict[str | None, int] = {
    None: 1,
    **{s: 1024 ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: 1000 ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


class InventoryError(Exception):
    """Something in the environment the estimate cannot price: the message says what."""


def gib(quantity: str | int) -> int:
    """A Kubernetes storage quantity as whole GiB, rounded up as EBS provisions it."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise InventoryError(f"storage size {quantity!r} is not a quantity like 20Gi")
    size = float(match.group(1)) * _FACTORS[match.group(2)]
    return max(1, math.ceil(size / 1024**3))


def from_eksctl(cfg: Mapping[str, Any]) -> dict[str, Any]:
    azs = len(cfg.get("availabilityZones") or []) or EKSCTL_AZS
    groups = []
    for ng in [*(cfg.get("managedNodeGroups") or []), *(cfg.get("nodeGroups") or [])]:
        types = ng.get("instanceTypes") or [ng.get("instanceType") or EKSCTL_INSTANCE_TYPE]
        count = ng.get("desiredCapacity", ng.get("minSize", EKSCTL_NODES))
        groups.append(
            NodeGroup(
                name=ng["name"],
                instance_type=types[0],
                count=int(count),
                volume_gib=int(ng.get("volumeSize", EKSCTL_VOLUME_GIB)),
                volume_type=ng.get("volumeType", EKSCTL_VOLUME_TYPE),
            )
        )
    nat = ((cfg.get("vpc") or {}).get("nat") or {}).get("gateway", "Single")
    gateways = {"Single": 1, "HighlyAvailable": azs, "Disable": 0}
    if nat not in gateways:
        raise InventoryError(f"vpc.nat.gateway {nat!r}: expected one of {', '.join(gateways)}")
    logging = ((cfg.get("cloudWatch") or {}).get("clusterLogging") or {}).get("enableTypes")
    return {
        "region": (cfg.get("metadata") or {}).get("region"),
        "availability_zones": azs,
        "node_groups": tuple(groups),
        "nat_gateways": gateways[nat],
        "nat_setting": nat,
        "control_plane_logs": bool(logging),
    }


def from_objects(
    objects: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[tuple[Volume, ...], tuple[LoadBalancer, ...]]:
    """Volumes and load balancers of rendered objects, each given with the namespace it
    lands in when it names none (its Application's destination)."""
    objects = list(objects)
    classes = {
        o["metadata"]["name"]: (o.get("parameters") or {}).get("type")
        or EBS_PROVISIONERS[o["provisioner"]]
        for _, o in objects
        if o["kind"] == "StorageClass" and o.get("provisioner") in EBS_PROVISIONERS
    }

    def volume(name: str, spec: Mapping[str, Any]) -> Volume:
        cls = spec.get("storageClassName") or DEFAULT_STORAGE_CLASS
        kind = classes.get(cls) or (cls if cls in EBS_TYPES else None)
        if kind is None:
            raise InventoryError(f"PVC {name}: storage class {cls!r} is not an EBS class we know")
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if size is None:
            raise InventoryError(f"PVC {name}: no resources.requests.storage")
        return Volume(name, gib(size), kind)

    volumes: list[Volume] = []
    albs: dict[str, tuple[tuple[str, ...], bool]] = {}
    lbs: list[LoadBalancer] = []
    for default_ns, obj in objects:
        meta = obj["metadata"]
        ns, name = meta.get("namespace") or default_ns, meta["name"]
        ann = meta.get("annotations") or {}
        spec = obj.get("spec") or {}
        if obj["kind"] == "PersistentVolumeClaim":
            volumes.append(volume(f"{ns}/{name}", spec))
        elif obj["kind"] == "StatefulSet":
            # Each replica gets its own claims, named <template>-<statefulset>-<ordinal>.
            for i in range(int(spec.get("replicas", 1))):
                for tpl in spec.get("volumeClaimTemplates") or []:
                    claim = f"{ns}/{tpl['metadata']['name']}-{name}-{i}"
                    volumes.append(volume(claim, tpl.get("spec") or {}))
        elif obj["kind"] == "Ingress":
            cls = spec.get("ingressClassName") or ann.get("kubernetes.io/ingress.class")
            if cls != "alb":
                continue  # not an ALB; its controller's Service is counted if it has one
            # One ALB per IngressGroup; an Ingress without a group has one of its own.
            group = ann.get("alb.ingress.kubernetes.io/group.name")
            key = f"group {group}" if group else f"{ns}/{name}"
            public = ann.get("alb.ingress.kubernetes.io/scheme") == "internet-facing"
            members, was_public = albs.get(key, ((), False))
            albs[key] = ((*members, f"{ns}/{name}"), was_public or public)
        elif obj["kind"] == "Service" and spec.get("type") == "LoadBalancer":
            controller = spec.get("loadBalancerClass") == "service.k8s.aws/nlb"
            controller |= ann.get(f"{_ANN}type") in NLB_TYPES
            if controller:  # AWS Load Balancer Controller: internal unless told otherwise
                public = ann.get(f"{_ANN}scheme") == "internet-facing"
            else:  # the in-tree controller: a Classic LB, internet-facing by default
                public = ann.get(f"{_ANN}internal") not in ("true", "0.0.0.0/0")
            kind: Literal["nlb", "clb"] = "nlb" if controller else "clb"
            lbs.append(
                LoadBalancer(kind, f"{ns}/{name}", public, f"{kind.upper()} of Service {ns}/{name}")
            )
    alb_list = [
        LoadBalancer("alb", key, public, f"ALB of Ingress {', '.join(members)}")
        for key, (members, public) in albs.items()
    ]
    return tuple(sorted(volumes, key=lambda v: v.name)), (*alb_list, *lbs)


def load(repo: Path, env: str, helm: Path) -> Environment:
    """The environment clusters/<env> describes in the tree `repo`, rendered with `helm`."""
    eksctl_path = repo / "clusters" / env / "eksctl.yaml"
    if not eksctl_path.is_file():
        raise InventoryError(f"clusters/{env}/eksctl.yaml does not exist")
    cluster = from_eksctl(yaml.safe_load(eksctl_path.read_text()))
    if not cluster["region"]:
        raise InventoryError(f"clusters/{env}/eksctl.yaml: no metadata.region")
    settings = config.load(repo, env)
    rendered = [
        (app.namespace, obj) for app in environment_apps(repo, env, helm) for obj in app.objects
    ]
    volumes, load_balancers = from_objects(rendered)
    return Environment(
        name=env,
        volumes=volumes,
        load_balancers=load_balancers,
        usage=settings.usage,
        **cluster,
    )
