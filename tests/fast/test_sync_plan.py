"""The sync planner on fixtures: what git holds is rendered (our own charts, with the values
an environment gives them), ordered into waves, tracked and compared with what is live.
tests/test_application.py runs the same through the operator and a cluster."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from herd_devkit.local.tools import ToolsMissing, binary
from herd_operator.gitops.plan import (
    Key,
    changed_paths,
    comparable,
    differs,
    order,
    tracked_by,
    tracking_id,
)
from herd_operator.gitops.render import Source, render

from ..helpers import ROOT

MANIFESTS = {
    "db.yaml": """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, annotations: {argocd.argoproj.io/sync-wave: "-1"}}
spec: {serviceName: db, selector: {matchLabels: {app: db}},
       template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: pg}]}}}
""",
    "web.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {selector: {matchLabels: {app: web}},
       template: {metadata: {labels: {app: web}}, spec: {containers: [{name: w, image: w}]}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {greeting: hello}
""",
    "later.yaml": """\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, annotations: {platform.herd-itt.com/sync-wave: "5"}}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: m, image: m}]}}}
""",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for name, text in MANIFESTS.items():
        path = tmp_path / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def names(wave: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in wave]


def test_waves_first_then_what_others_depend_on(repo: Path) -> None:
    objects = render(repo, Source(path="app"), "shop", Path("/no/helm/needed"))
    assert [names(w) for w in order(objects)] == [
        ["StatefulSet/db"],
        ["ConfigMap/web", "Service/web", "Deployment/web"],
        ["Job/migrate"],
    ]


def test_tracking_and_comparing_with_the_live_object(repo: Path) -> None:
    [web] = [
        o for o in render(repo, Source(path="app"), "shop", Path("/x")) if o["kind"] == "ConfigMap"
    ]
    key = Key.of({**web, "metadata": {**web["metadata"], "namespace": "shop"}})
    assert tracking_id("herd-system", "shop", key) == "herd-system_shop:/ConfigMap:shop/web"
    live = copy.deepcopy(web)
    live["metadata"] |= {
        "uid": "1",
        "resourceVersion": "7",
        "managedFields": [{}],
        "annotations": {
            "platform.herd-itt.com/tracking-id": tracking_id("herd-system", "shop", key)
        },
    }
    assert tracked_by(live, "herd-system", "shop")
    assert not tracked_by(live, "herd-system", "other")
    # What the server adds says nothing; a changed value does, and where.
    web["metadata"]["annotations"] = live["metadata"]["annotations"]
    assert not differs(web, live)
    live["data"]["greeting"] = "hi"
    assert differs(web, live)
    assert changed_paths(comparable(web), comparable(live)) == ["data.greeting"]
    assert differs(web, None)


def test_an_app_of_ours_renders_with_an_environments_values() -> None:
    """The herd-api chart with the values dev's Application gives it, ordered: the
    ServiceAccount before the Deployment that runs as it."""
    try:
        helm = binary("helm")
    except ToolsMissing:
        pytest.skip("helm is not built (make tools)")
    source = Source(
        path="charts/herd-api",
        value_files=("../../apps/herd-api/values.yaml", "../../clusters/dev/values/herd-api.yaml"),
        release_name="herd-api",
    )
    objects = render(ROOT, source, "herd-system", helm)
    flat = [names(w) for w in order(objects)]
    kinds = [n.split("/")[0] for wave in flat for n in wave]
    assert "Deployment" in kinds
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")
    # Its own namespace, and the tenants namespace, where it may write Tenants (its Role).
    where = {(o["kind"], o["metadata"].get("namespace")) for o in objects}
    assert {ns for _, ns in where} == {None, "tenants"}
    assert {kind for kind, ns in where if ns == "tenants"} == {"Role", "RoleBinding"}
