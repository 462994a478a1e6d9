"""The custom resource models (herd_core.models) are the one source of our CRDs: the committed
CRDs are exactly what the models make, and the models and the real API server agree on what
is valid — a reserved Tenant slug is refused by `kubectl` as by the signup API."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any, Literal

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from herd_core.constants import API_VERSION, GROUP, RESERVED_SLUGS, VERSION
from herd_core.models import (
    RESOURCES,
    Application,
    CognitoClient,
    Project,
    Resource,
    SESTemplate,
    Tenant,
)
from herd_devkit import manifests
from herd_devkit.local.tools import binary

from .conftest import Cluster
from .helpers import CRD_DIR, ROOT


def sample(resource: type[Resource], namespace: str) -> dict[str, Any]:
    """A valid object of each kind that sets most of its fields."""
    specs: dict[type[Resource], tuple[str, dict[str, Any]]] = {
        Tenant: (
            "acme-farms",
            {
                "displayName": "Acme Farms",
                "slug": "acme-farms",
                "adminEmail": "owner@acme.example.com",
                "plan": "standard",
                "welcomeTemplate": "welcome",
                "callbackURLs": ["https://acme.example.com/cb", "http://localhost:3000/cb"],
            },
        ),
        SESTemplate: (
            "welcome",
            {
                "templateName": "herd-welcome",
                "subject": "Welcome, {{name}}",
                "html": "<p>Hello {{name}}</p>",
                "text": None,  # null means absent, to the model as to the API server
                "region": "eu-west-1",
                "testData": {"name": "Ada", "nested": {"list": [1, 2]}},
                "deletionPolicy": "Retain",
            },
        ),
        CognitoClient: (
            "console",
            {
                "clientName": "herd console",
                "userPoolId": "eu-west-1_AbC123",
                "generateSecret": True,
                "explicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                "allowedOAuthFlows": ["code", "client_credentials"],
                "allowedOAuthScopes": ["openid", "api/read"],
                "callbackURLs": ["https://console.example.com/cb"],
                "logoutURLs": ["https://console.example.com/bye"],
                "tokenValidity": {"accessTokenMinutes": 60, "refreshTokenDays": 30},
                "secretName": "console-cognito",
            },
        ),
        Application: (
            "web",
            {
                "project": "default",
                "source": {
                    "repoURL": "https://git.example.com/herd.git",
                    "path": "apps/web",
                    "helm": {
                        "releaseName": "web",
                        "valueFiles": ["values.yaml"],
                        "values": "replicas: 2\n",
                        "valuesObject": {"image": {"tag": "1.2.3"}},
                    },
                    "credentials": {"secretName": "git-creds"},
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
                "syncPolicy": {
                    "automated": {"prune": True},
                    "syncOptions": ["CreateNamespace=true"],
                    "retry": {"limit": 3, "backoff": {"duration": "10s"}},
                },
                "pollInterval": "2m",
            },
        ),
        Project: (
            f"p-{namespace}",
            {
                "description": "what web may do",
                "sourceRepos": ["https://git.example.com/*"],
                "destinations": [{"namespace": "web-*", "server": "*"}],
                "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
                "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}],
                "destinationServiceAccounts": [
                    {"namespace": "web-*", "defaultServiceAccount": "herd-system:deployer"}
                ],
            },
        ),
    }
    name, spec = specs[resource]
    return body(resource, name, spec)


def body(resource: type[Resource], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": resource.__name__,
        "metadata": {"name": name},
        "spec": spec,
    }


def create(
    api: ApiClient, resource: type[Resource], namespace: str, obj: dict[str, Any], dry: bool
) -> dict[str, Any]:
    custom, kwargs = client.CustomObjectsApi(api), {"dry_run": "All"} if dry else {}
    if resource.crd.scope == "Cluster":
        return custom.create_cluster_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, resource.crd.plural, obj, **kwargs
        )
    return custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, namespace, resource.crd.plural, obj, **kwargs
    )


def schema_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key in ("properties", "items", "additionalProperties"):
            sub = node.get(key)
            if key == "properties" and isinstance(sub, dict):
                for name, child in sub.items():
                    yield from schema_nodes(child, f"{path}.{name}")
            elif isinstance(sub, dict):
                yield from schema_nodes(sub, f"{path}[]")


# -- without a cluster -----------------------------------------------------------------


def test_committed_crds_are_what_the_models_make() -> None:
    assert manifests.stale(CRD_DIR) == [], "run `make manifests` and commit the result"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_generated_schemas_are_structural(resource: type[Resource]) -> None:
    text = (CRD_DIR / manifests.filename(resource)).read_text()
    assert text.startswith(f"# Generated from herd_core.models.{resource.__name__} ")
    crd = yaml.safe_load(text)
    [version] = crd["spec"]["versions"]
    for path, node in schema_nodes(version["schema"]["openAPIV3Schema"]):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"} & set(node), path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("default", "") is not None, path
        if node.get("type") == "object" and "properties" not in node and path != ".metadata":
            assert "additionalProperties" in node or node.get(
                "x-kubernetes-preserve-unknown-fields"
            ), f"{path}: an object that says nothing of its fields"


def committed_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for folder in ("examples", "apps", "clusters"):
        for path in sorted((ROOT / folder).rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION:
                    found.append((f"{path.relative_to(ROOT)}:{doc['kind']}", doc))
    return found


def test_every_object_in_git_is_valid_to_its_model() -> None:
    kinds = {r.__name__: r for r in RESOURCES}
    objects = committed_objects()
    assert {doc["kind"] for _, doc in objects} >= {"Application", "Project", "SESTemplate"}
    for where, doc in objects:
        try:
            kinds[doc["kind"]].model_validate(doc)
        except ValidationError as err:
            pytest.fail(f"{where}: {err}")


def test_the_converter_writes_what_kubernetes_accepts() -> None:
    """Refs inlined with both sides' rules, `| None` dropped, free-form and extra="allow"
    objects keep their fields, extra="forbid" says nothing, Literal of one is an enum."""
    from pydantic import BaseModel, ConfigDict, Field

    from herd_core.models.base import cel, k8s

    class Inner(BaseModel):
        """Inner's doc."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=k8s(cel("model")))
        n: int = Field(3, ge=1)

    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        s: str | None = None

    class Outer(BaseModel):
        inner: Inner | None = Field(None, description="field doc", json_schema_extra=k8s(cel("f")))
        loose: Loose
        free: dict[str, Any] | None = None
        tags: dict[str, str] = Field(default_factory=dict)
        one: Literal["x"] = "x"

    raw = Outer.model_json_schema()
    out = manifests.structural(raw, raw["$defs"])
    assert out["required"] == ["loose"]
    assert out["properties"]["inner"] == {
        "description": "field doc",
        "type": "object",
        "x-kubernetes-validations": [{"rule": "model"}, {"rule": "f"}],
        "properties": {"n": {"type": "integer", "default": 3, "minimum": 1}},
    }
    assert out["properties"]["loose"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"s": {"type": "string"}},
    }
    assert out["properties"]["free"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert out["properties"]["tags"]["additionalProperties"] == {"type": "string"}
    assert out["properties"]["one"] == {"type": "string", "enum": ["x"], "default": "x"}

    class Either(BaseModel):
        v: int | str

    with pytest.raises(ValueError, match="structural"):
        manifests.structural(Either.model_json_schema(), {})


def test_reserved_slugs_and_the_api_share_one_rule() -> None:
    """The CEL rule lists exactly core's reserved slugs, which the API's model refuses too."""
    from herd_api.models import SignupCreate

    crd = yaml.safe_load((CRD_DIR / manifests.filename(Tenant)).read_text())
    slug = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["slug"]
    rule = next(r["rule"] for r in slug["x-kubernetes-validations"] if "in [" in r["rule"])
    assert sorted(RESERVED_SLUGS) == [
        s.strip(" '") for s in rule[rule.index("[") + 1 : -2].split(",")
    ]
    for reserved in RESERVED_SLUGS:
        with pytest.raises(ValidationError, match="is reserved"):
            SignupCreate(displayName="x", slug=reserved, adminEmail="a@b.example", plan="starter")


# -- through the real API server -------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_a_valid_sample_passes_the_model_and_the_api_server_alike(
    api: ApiClient, crds: None, namespace: str, resource: type[Resource]
) -> None:
    obj = sample(resource, namespace)
    model = resource.model_validate(obj)
    stored = create(api, resource, namespace, obj, dry=True)
    # Both fill in the same defaults, and the server prunes nothing the model knows.
    assert stored["spec"] == model.model_dump(mode="json", exclude_none=True)["spec"]


# Objects both the model and the API server refuse; the server says `message`.
REFUSED = [
    (Tenant, "admin", {"slug": "admin"}, "admin is a reserved slug"),
    (Tenant, "master", {"slug": "master"}, "master is a reserved slug"),
    (Tenant, "acme-a", {"slug": "acme-b"}, "metadata.name must equal spec.slug"),
    (
        Tenant,
        "acme-c",
        {"slug": "acme-c", "welcomeTemplate": "Welcome_Mail"},
        "spec.welcomeTemplate",
    ),
    (Tenant, "acme-d", {"slug": "acme-d", "plan": "platinum"}, "spec.plan"),
    (SESTemplate, "nobody", {"subject": "no body"}, "at least one of spec.html or spec.text"),
    (
        CognitoClient,
        "m2m",
        {
            "clientName": "m2m",
            "secretName": "m2m",
            "allowedOAuthFlows": ["client_credentials"],
            "allowedOAuthScopes": ["api/read"],
        },
        "the client_credentials flow needs generateSecret true",
    ),
    (
        Application,
        "bad-ns",
        {
            "project": "default",
            "source": {"repoURL": "https://x/y.git", "path": "."},
            "destination": {"namespace": "Kube_System"},
        },
        "spec.destination.namespace",
    ),
    (
        Application,
        "bad-creds",
        {
            "project": "default",
            "source": {
                "repoURL": "https://x/y.git",
                "path": ".",
                "credentials": {"secretName": "A B"},
            },
            "destination": {"namespace": "web"},
        },
        "spec.source.credentials.secretName",
    ),
    (
        Project,
        "no-repos",
        {
            "sourceRepos": [],
            "destinations": [{"namespace": "x"}],
            "destinationServiceAccounts": [{"namespace": "x", "defaultServiceAccount": "sa"}],
        },
        "spec.sourceRepos",
    ),
]
TENANT = {"displayName": "Acme", "adminEmail": "a@acme.example.com", "plan": "starter"}


@pytest.mark.parametrize(
    ("resource", "name", "spec", "message"),
    REFUSED,
    ids=[f"{r.__name__}-{n}" for r, n, _, _ in REFUSED],
)
def test_the_model_and_the_api_server_refuse_alike(
    api: ApiClient,
    crds: None,
    namespace: str,
    resource: type[Resource],
    name: str,
    spec: dict[str, Any],
    message: str,
) -> None:
    obj = body(resource, name, {**TENANT, **spec} if resource is Tenant else spec)
    with pytest.raises(ValidationError):
        resource.model_validate(obj)
    with pytest.raises(ApiException) as err:
        create(api, resource, namespace, obj, dry=False)
    assert err.value.status == 422
    assert message in err.value.body


@pytest.mark.parametrize(("verb", "slug"), [("apply", "admin"), ("create", "www")])
def test_kubectl_cannot_make_a_tenant_of_a_reserved_name(
    cluster: Cluster, api: ApiClient, crds: None, namespace: str, verb: str, slug: str
) -> None:
    manifest = yaml.safe_dump(body(Tenant, slug, {**TENANT, "slug": slug}))
    kubectl = [str(binary("kubectl")), f"--kubeconfig={cluster.kubeconfig}", f"-n={namespace}"]
    run = subprocess.run(
        [*kubectl, verb, "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert f'spec.slug: Invalid value: "{slug}": {slug} is a reserved slug' in run.stderr
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "tenants"
    )
    assert found["items"] == []  # type: ignore[index]
