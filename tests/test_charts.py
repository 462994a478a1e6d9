"""Charts: lint, schema, render for dev and prod, validate against the real API server,
install and uninstall, and a policy check over everything rendered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from .charts import (
    CHARTS,
    LIBRARIES,
    OURS,
    ci_values,
    component,
    containers,
    helm,
    readme_exceptions,
    template,
    violations,
)
from .conftest import Cluster
from .helpers import ROOT, wait_for

RECOMMENDED = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


def test_every_chart_has_the_helm_create_shape() -> None:
    assert {"herd-api", "herd-workers", "herd-operator", "openremote"} <= set(CHARTS)
    for chart in CHARTS:
        folder = ROOT / "charts" / chart
        for required in (
            "Chart.yaml",
            "values.yaml",
            "values.schema.json",
            "README.md",
            "templates/_helpers.tpl",
            "templates/NOTES.txt",
        ):
            assert (folder / required).is_file(), f"{chart} lacks {required}"
        assert {p.name for p in ci_values(chart)} >= {"dev-values.yaml", "prod-values.yaml"}


# What every herd chart takes from charts/herd-lib instead of defining it again.
SHARED_HELPERS = ("name", "fullname", "chart", "labels", "selectorLabels", "serviceAccountName")


def test_herd_lib_is_a_library_with_the_shared_helpers() -> None:
    assert LIBRARIES == ["herd-lib"]
    lib = ROOT / "charts" / "herd-lib"
    assert yaml.safe_load((lib / "Chart.yaml").read_text())["type"] == "library"
    text = "".join(p.read_text() for p in (lib / "templates").glob("*.tpl"))
    defined = set(re.findall(r'define "herd-lib\.([\w.]+)"', text))
    manifests = {"hpa", "pdb", "serviceAccount", "networkPolicy", "tenantsRoleBinding"}
    contexts = {"podSecurityContext", "containerSecurityContext"}
    assert {*SHARED_HELPERS, *manifests, *contexts} <= defined
    result = helm("lint", "--strict", "charts/herd-lib", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not installable" in helm("template", "t", "charts/herd-lib", check=False).stderr


@pytest.mark.parametrize("chart", OURS)
def test_herd_charts_take_the_shared_helpers_from_herd_lib(chart: str) -> None:
    folder = ROOT / "charts" / chart
    lib_version = yaml.safe_load((ROOT / "charts/herd-lib/Chart.yaml").read_text())["version"]
    deps = yaml.safe_load((folder / "Chart.yaml").read_text()).get("dependencies") or []
    assert {"name": "herd-lib", "version": lib_version, "repository": "file://../herd-lib"} in deps
    # The dependency is the library itself through a relative link: it resolves inside any
    # checkout (the GitOps engine refuses only links that leave it), needs no `helm dependency
    # build`, and cannot go stale as a packaged copy would.
    link = folder / "charts" / "herd-lib"
    assert link.is_symlink() and os.readlink(link) == "../../herd-lib"
    assert [p.name for p in (folder / "charts").iterdir()] == ["herd-lib"]
    assert not (folder / "Chart.lock").exists(), "helm dependency build ran: see charts/README.md"
    text = "".join(p.read_text() for p in (folder / "templates").iterdir() if p.is_file())
    own = re.findall(r'define "([\w.-]+)"', text)
    copies = [d for d in own if d.rsplit(".", 1)[-1] in SHARED_HELPERS]
    assert not copies, f"{chart} defines its own {copies}: use herd-lib's"
    assert f'include "{chart}.' not in text


@pytest.mark.parametrize("chart", CHARTS)
def test_lint_strict(chart: str) -> None:
    for args in ([], *[["-f", str(f)] for f in ci_values(chart)]):
        result = helm("lint", "--strict", f"charts/{chart}", *args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("chart", CHARTS)
def test_rendered_objects_carry_the_recommended_labels(chart: str) -> None:
    for values in ci_values(chart):
        for obj in template(chart, "-f", str(values)):
            labels = obj["metadata"].get("labels") or {}
            missing = [k for k in RECOMMENDED if k not in labels]
            assert not missing, f"{chart} {obj['kind']}/{obj['metadata']['name']}: {missing}"


@pytest.mark.parametrize(
    ("chart", "bad", "message"),
    [
        ("herd-api", "replicaCount=0", "/replicaCount"),
        ("herd-workers", "config.waitSeconds=99", "/config/waitSeconds"),
        ("herd-operator", "config.applicationNamespaces[0]=", "/config/applicationNamespaces/0"),
        ("herd-api", "typoKey=1", "typoKey"),
        ("openremote", "manager.replicaCount=2", "/manager/replicaCount"),
    ],
)
def test_schema_refuses_bad_values(chart: str, bad: str, message: str) -> None:
    result = helm("template", "t", f"charts/{chart}", "--set", bad, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_make_validate_renders_and_validates_both_environments(tmp_path: object) -> None:
    out = ROOT / ".herd" / "rendered"
    result = subprocess.run(
        [sys.executable, "-m", "herd_core", "validate", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for env in ("dev", "prod"):
        for app in ("root", "platform", "herd-operator", "herd-api", "herd-workers", "openremote"):
            assert (out / env / f"{app}.yaml").is_file(), f"{env}/{app}"
    assert "valid for dev, prod" in result.stdout
    dev = (out / "dev" / "herd-api.yaml").read_text()
    prod = (out / "prod" / "herd-api.yaml").read_text()
    assert "api.platform-dev.herd-itt.com" in dev and "111111111111" in dev
    assert "api.platform.herd-itt.com" in prod and "222222222222" in prod


@pytest.mark.parametrize("chart", CHARTS)
def test_policy_non_root_read_only_and_resources(chart: str) -> None:
    allowed = readme_exceptions(chart)
    if chart in OURS:
        assert allowed == set(), "our own programs take no exceptions"
    seen = set()
    for values in ci_values(chart):
        for obj in template(chart, "-f", str(values)):
            for pod, c in containers(obj):
                name = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
                resources = c.get("resources") or {}
                for kind in ("requests", "limits"):
                    for res in ("cpu", "memory"):
                        assert (resources.get(kind) or {}).get(res), f"{name}: no {kind}.{res}"
                for setting in violations(pod, c):
                    row = (component(obj), c["name"], setting)
                    assert row in allowed, (
                        f"{name}: {setting} not hardened and not listed in charts/{chart}/README.md"
                    )
                    seen.add(row)
    assert seen == allowed, f"README lists exceptions that do not exist: {allowed - seen}"


@pytest.mark.slow
@pytest.mark.parametrize("chart", CHARTS)
def test_install_and_uninstall_into_the_api_server(
    chart: str, cluster: Cluster, api: ApiClient
) -> None:
    ns = f"chart-{uuid.uuid4().hex[:8]}"
    release = f"r{uuid.uuid4().hex[:6]}"
    kube = ["--kubeconfig", str(cluster.kubeconfig), "-n", ns]
    # Roles in the tenants namespace go into the test's own: no dependence on test order.
    values = ["-f", str(ci_values(chart)[0])]
    if chart.startswith("herd-"):
        values += ["--set", f"config.tenantsNamespace={ns}"]
    result = helm(
        "install", release, f"charts/{chart}", *kube, "--create-namespace", *values, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        listed = helm("get", "manifest", release, *kube).stdout
        assert "kind: Deployment" in listed or "kind: StatefulSet" in listed
        deployments = client.AppsV1Api(api).list_namespaced_deployment(ns).items
        statefulsets = client.AppsV1Api(api).list_namespaced_stateful_set(ns).items
        assert deployments or statefulsets
    finally:
        result = helm("uninstall", release, *kube, "--wait", "--timeout", "2m", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(
        lambda: (
            not client.AppsV1Api(api).list_namespaced_deployment(ns).items
            and not client.AppsV1Api(api).list_namespaced_stateful_set(ns).items
        ),
        60,
        "workloads gone after uninstall",
    )
    client.CoreV1Api(api).delete_namespace(ns)


def test_workers_alert_on_dead_letters_where_prometheus_rules_exist() -> None:
    values = str(ROOT / "charts" / "herd-workers" / "ci" / "dev-values.yaml")
    assert not [o for o in template("herd-workers", "-f", values) if o["kind"] == "PrometheusRule"]
    rendered = template(
        "herd-workers", "-f", values, "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"
    )
    rules = [o for o in rendered if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    alert = rules[0]["spec"]["groups"][0]["rules"][0]
    assert alert["alert"] == "HerdEmailJobsDeadLettered"
    assert "herd_email_dlq_messages" in alert["expr"]
    env = {
        e["name"]: e.get("value")
        for o in rendered
        if o["kind"] == "Deployment"
        for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HERD_EMAIL_DLQ_URL"].endswith("/dev-herd-emails-dlq")
    assert int(env["HERD_WORKER_CLAIM_LEASE"]) <= int(env["HERD_WORKER_VISIBILITY_TIMEOUT"])


def api_env(*args: str) -> dict[str, dict[str, Any]]:
    """The API container's env of the herd-api chart rendered with `args`, by name."""
    rendered = template("herd-api", "-f", "charts/herd-api/ci/dev-values.yaml", *args)
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_api_gets_its_signup_budget_and_verification_hook_secret_from_a_secret() -> None:
    env = api_env()
    assert env["HERD_SIGNUP_GLOBAL_RATE"]["value"] == "0.1"
    assert env["HERD_SIGNUP_GLOBAL_BURST"]["value"] == "200"
    assert "HERD_SIGNUP_VERIFY_URL" not in env and "HERD_SIGNUP_VERIFY_SECRET" not in env
    env = api_env(
        "--set",
        "config.signupVerifyUrl=https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "--set",
        "config.signupGlobalBurst=50",
    )
    assert env["HERD_SIGNUP_GLOBAL_BURST"]["value"] == "50"
    assert env["HERD_SIGNUP_VERIFY_URL"]["value"].endswith("/siteverify")
    assert env["HERD_SIGNUP_VERIFY_SECRET"] == {
        "name": "HERD_SIGNUP_VERIFY_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "herd-signup-verify", "key": "secret"}},
    }
    refused = helm(
        "template", "t", "charts/herd-api", "--set", "config.signupVerifyUrl=ftp://x", check=False
    )
    assert refused.returncode != 0 and "signupVerifyUrl" in refused.stderr


def test_the_api_holds_signups_for_email_verification_with_its_key_from_a_secret() -> None:
    env = api_env()
    assert env["HERD_SIGNUP_EMAIL_VERIFICATION"]["value"] == "true"
    assert env["HERD_SIGNUP_TOKEN_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "herd-signup-token", "key": "key"}
    }
    assert env["HERD_EMAIL_QUEUE_URL"]["value"].endswith("/111111111111/dev-herd-emails")
    assert env["HERD_SIGNUP_VERIFICATION_TEMPLATE"]["value"] == "signup-verification"
    off = api_env("--set", "config.signupEmailVerification=false")
    assert off["HERD_SIGNUP_EMAIL_VERIFICATION"]["value"] == "false"
    assert "HERD_SIGNUP_TOKEN_KEY" not in off
    role = next(
        o
        for o in template("herd-api", "-f", "charts/herd-api/ci/dev-values.yaml")
        if o["kind"] == "Role"
    )
    assert {
        "apiGroups": ["platform.herd-itt.com"],
        "resources": ["sestemplates"],
        "resourceNames": ["signup-verification"],
        "verbs": ["get"],
    } in role["rules"]


def test_public_ingress_routes_only_pages_and_v1() -> None:
    rendered = template("herd-api", "-f", "charts/herd-api/ci/dev-values.yaml")
    ingress = next(o for o in rendered if o["kind"] == "Ingress")
    paths = {
        (p["path"], p["pathType"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert paths == {
        ("/", "Exact"),
        ("/admin", "Exact"),
        ("/static/logo-upload.js", "Exact"),
        ("/v1", "Prefix"),
    }


@pytest.mark.parametrize(
    ("chart", "open_ports"),
    [("herd-api", {"http"}), ("herd-workers", set()), ("herd-operator", {"webhook"})],
)
def test_network_policies_admit_only_what_each_program_serves(
    chart: str, open_ports: set[str]
) -> None:
    args = ["-f", f"charts/{chart}/ci/dev-values.yaml"]
    if chart == "herd-operator":
        args += ["--set", "webhook.enabled=true"]
    rendered = template(chart, *args)
    policy = next(o for o in rendered if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert ports == open_ports
    assert all(rule.get("from") for rule in policy["spec"]["ingress"])  # never "from anywhere"
    workload = next(o for o in rendered if o["kind"] == "Deployment")
    selector = workload["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selector


def test_a_port_nobody_is_admitted_to_stays_closed() -> None:
    """An empty list of peers would mean "from anywhere" to Kubernetes: herd-lib leaves the
    rule out instead, and a policy with no rule admits nobody."""
    rendered = template(
        "herd-operator",
        "-f",
        "charts/herd-operator/ci/dev-values.yaml",
        "--set",
        "webhook.enabled=true",
        "--set-json",
        "networkPolicy.webhookFrom=[]",
    )
    policy = next(o for o in rendered if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["ingress"] == []


@pytest.mark.parametrize(("env", "vpc"), [("dev", "10.10"), ("prod", "10.20")])
def test_only_the_load_balancer_subnets_reach_the_api(env: str, vpc: str) -> None:
    """The environments admit the ALB's public subnets, not the pods' private ones."""
    import ipaddress

    rendered = template(
        "herd-api",
        "-f",
        "apps/herd-api/values.yaml",
        "-f",
        f"clusters/{env}/values/herd-api.yaml",
    )
    policy = next(o for o in rendered if o["kind"] == "NetworkPolicy")
    blocks = [
        ipaddress.ip_network(peer["ipBlock"]["cidr"])
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "ipBlock" in peer  # the monitoring namespace scrapes /metrics on the same port
    ]
    assert blocks and all(b.subnet_of(ipaddress.ip_network(f"{vpc}.0.0/16")) for b in blocks)
    for private in (f"{vpc}.96.10", f"{vpc}.130.7", f"{vpc}.170.1"):  # eksctl's private /19s
        assert not any(ipaddress.ip_address(private) in b for b in blocks), private


def _metrics_peers(policy: dict[str, Any], port: str) -> list[dict[str, Any]]:
    return [
        peer
        for rule in policy["spec"]["ingress"]
        if any(p["port"] == port for p in rule["ports"])
        for peer in rule["from"]
    ]


@pytest.mark.parametrize(
    ("chart", "metrics_port"),
    [("herd-api", "http"), ("herd-operator", "metrics"), ("herd-workers", "http")],
)
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_policy_admits_the_whole_vpc_and_metrics_come_from_monitoring(
    chart: str, metrics_port: str, env: str
) -> None:
    """L6: nothing admits 10.0.0.0/8 (every pod of the VPC) to /metrics, /docs or the webhook;
    the chart defaults admit nobody, the environments the ALB's subnets, and metrics only the
    monitoring namespace."""
    import ipaddress

    webhook = ["--set", "webhook.enabled=true"] if chart == "herd-operator" else []
    defaults = template(chart, *webhook)
    for rendered in (
        defaults,
        template(
            chart, "-f", f"apps/{chart}/values.yaml", "-f", f"clusters/{env}/values/{chart}.yaml"
        ),
        template(chart, "-f", f"charts/{chart}/ci/{env}-values.yaml", *webhook),
    ):
        policy = next(o for o in rendered if o["kind"] == "NetworkPolicy")
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 16, peer
    env_policy = next(
        o
        for o in template(
            chart, "-f", f"apps/{chart}/values.yaml", "-f", f"clusters/{env}/values/{chart}.yaml"
        )
        if o["kind"] == "NetworkPolicy"
    )
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert monitoring in _metrics_peers(env_policy, metrics_port)
    default_policy = next(o for o in defaults if o["kind"] == "NetworkPolicy")
    assert default_policy["spec"]["ingress"] == []  # nobody, until an environment says who


def test_an_exposed_api_without_load_balancer_subnets_does_not_render() -> None:
    result = helm("template", "t", "charts/herd-api", "--set", "ingress.enabled=true", check=False)
    assert result.returncode != 0
    assert "networkPolicy.ingressFrom must list the load balancer's subnets" in result.stderr
