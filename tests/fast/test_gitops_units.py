"""Unit tests of the sync engine's pure parts: health, waves, allow list, webhook, merges."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd_devkit.local.tools import binary
from herd_operator.gitops import health
from herd_operator.gitops.plan import Key, NotAllowed, comparable, order
from herd_operator.gitops.project import (
    InvalidProject,
    Project,
    check_repo_url,
    credentials_match,
    impersonated_user,
)
from herd_operator.gitops.render import (
    Limits,
    RenderError,
    Source,
    load_all_capped,
    merge,
    render,
)
from herd_operator.gitops.webhook import matches, normalize, push_target, signature_ok


def deploy(replicas: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, health.MISSING),
        (deploy(updatedReplicas=2, availableReplicas=2), health.HEALTHY),
        (deploy(updatedReplicas=2, availableReplicas=1), health.PROGRESSING),
        ({**deploy(), "status": {"observedGeneration": 1}}, health.PROGRESSING),
        ({**deploy(), "spec": {"paused": True}}, health.SUSPENDED),
        (
            deploy(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            health.DEGRADED,
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {},
                "spec": {"replicas": 1},
                "status": {"readyReplicas": 1},
            },
            health.HEALTHY,
        ),
        (
            {
                "kind": "DaemonSet",
                "metadata": {},
                "status": {
                    "desiredNumberScheduled": 3,
                    "updatedNumberScheduled": 3,
                    "numberAvailable": 2,
                },
            },
            health.PROGRESSING,
        ),
        (
            {
                "kind": "Job",
                "metadata": {},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]},
            },
            health.HEALTHY,
        ),
        (
            {
                "kind": "Job",
                "metadata": {},
                "status": {"conditions": [{"type": "Failed", "status": "True"}]},
            },
            health.DEGRADED,
        ),
        (
            {"kind": "PersistentVolumeClaim", "metadata": {}, "status": {"phase": "Pending"}},
            health.PROGRESSING,
        ),
        (
            {"kind": "PersistentVolumeClaim", "metadata": {}, "status": {"phase": "Bound"}},
            health.HEALTHY,
        ),
        (
            {"kind": "Service", "metadata": {}, "spec": {"type": "LoadBalancer"}, "status": {}},
            health.PROGRESSING,
        ),
        ({"kind": "Service", "metadata": {}, "spec": {"type": "ClusterIP"}}, health.HEALTHY),
        (
            {
                "kind": "Ingress",
                "metadata": {},
                "status": {"loadBalancer": {"ingress": [{"hostname": "x"}]}},
            },
            health.HEALTHY,
        ),
        (
            {
                "kind": "Tenant",
                "metadata": {},
                "status": {
                    "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]
                },
            },
            health.DEGRADED,
        ),
        (
            {
                "kind": "Tenant",
                "metadata": {},
                "status": {
                    "conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]
                },
            },
            health.PROGRESSING,
        ),
        ({"kind": "ConfigMap", "metadata": {}}, health.HEALTHY),
    ],
)
def test_health(obj: dict[str, Any] | None, expected: str) -> None:
    assert health.of(obj)[0] == expected


def test_the_app_takes_the_worst() -> None:
    assert (
        health.worst([health.HEALTHY, health.PROGRESSING, health.SUSPENDED]) == health.PROGRESSING
    )
    assert health.worst([health.MISSING, health.DEGRADED]) == health.DEGRADED
    assert health.worst([]) == health.HEALTHY


def obj(kind: str, name: str, wave: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if wave is not None:
        meta["annotations"] = {"argocd.argoproj.io/sync-wave": str(wave)}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_waves_then_argo_kind_order() -> None:
    waves = order(
        [
            obj("Deployment", "d"),
            obj("ConfigMap", "c"),
            obj("Namespace", "n"),
            obj("Service", "late", wave=2),
            obj("Secret", "early", wave=-1),
            obj("Widget", "w"),
        ]
    )
    assert [[o["metadata"]["name"] for o in w] for w in waves] == [
        ["early"],
        ["n", "c", "d", "w"],
        ["late"],
    ]


def test_project_checks() -> None:
    project = Project(
        "apps",
        {
            "sourceRepos": ["https://github.com/herd-itt/*"],
            "destinations": [{"namespace": "apps"}, {"namespace": "team-*"}],
            "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
            "namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}],
            "destinationServiceAccounts": [
                {"namespace": "team-*", "defaultServiceAccount": "platform:teams"},
                {"namespace": "*", "defaultServiceAccount": "deployer"},
            ],
        },
    )
    project.check_object(Key("", "v1", "ConfigMap", "team-a", "x"), True)
    project.check_object(Key("", "v1", "Namespace", "", "x"), False)
    with pytest.raises(NotAllowed, match="kube-system is not a destination"):
        project.check_object(Key("", "v1", "ConfigMap", "kube-system", "x"), True)
    with pytest.raises(NotAllowed, match="ClusterRole is not in the clusterResourceWhitelist"):
        project.check_object(Key("rbac.authorization.k8s.io", "v1", "ClusterRole", "", "x"), False)
    with pytest.raises(NotAllowed, match="blacklisted"):
        project.check_object(Key("", "v1", "Secret", "apps", "x"), True)
    project.check_source("https://github.com/herd-itt/herd.git")
    with pytest.raises(InvalidProject, match="not permitted"):
        project.check_source("https://github.com/evil/herd.git")
    with pytest.raises(InvalidProject, match="kube-system"):
        project.check_destination("kube-system")
    # First match wins; `ns:name` names another namespace, a bare name the destination's.
    assert project.service_account("team-a") == ("platform", "teams")
    assert project.service_account("apps") == ("apps", "deployer")
    assert impersonated_user(("apps", "deployer")) == "system:serviceaccount:apps:deployer"
    with pytest.raises(InvalidProject, match="no destinationServiceAccounts"):
        Project("empty", {}).service_account("apps")


def test_source_namespaces() -> None:
    """Argo's rule: an Application may name a Project from a namespace the Project lists
    (globs), or from the control-plane namespace (the operator's own); by default, none."""
    project = Project("apps", {"sourceNamespaces": ["apps", "team-*"]})
    project.check_application_namespace("apps", "herd-system")
    project.check_application_namespace("team-a", "herd-system")
    project.check_application_namespace("herd-system", "herd-system")
    with pytest.raises(InvalidProject, match=r"project apps does not permit .* namespace other"):
        project.check_application_namespace("other", "herd-system")
    with pytest.raises(InvalidProject, match="namespace herd-system"):
        project.check_application_namespace("herd-system", None)
    with pytest.raises(InvalidProject, match="namespace apps"):
        Project("closed", {}).check_application_namespace("apps", "herd-system")


@pytest.mark.parametrize(
    ("url", "local", "ok"),
    [
        ("https://github.com/herd-itt/herd.git", False, True),
        ("ssh://git@github.com/herd-itt/herd.git", False, True),
        ("git@github.com:herd-itt/herd.git", False, True),
        ("file:///var/cache/herd/git/repos/0123", False, False),
        ("/var/cache/herd/git/repos/0123", False, False),
        ("http://github.com/herd-itt/herd.git", False, False),
        ("file:///tmp/repo/origin.git", True, True),
        ("--upload-pack=touch /tmp/x", True, False),
    ],
)
def test_repository_urls_outside_local_mode(url: str, local: bool, ok: bool) -> None:
    if ok:
        check_repo_url(url, local)
    else:
        with pytest.raises(InvalidProject):
            check_repo_url(url, local)


@pytest.mark.parametrize(
    ("secret_url", "repo_url", "ok"),
    [
        ("https://github.com/herd-itt", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt/", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt/herd.git", "https://github.com/herd-itt/herd.git", True),
        ("https://github.com/herd-itt", "https://github.com/herd-itt-evil/x.git", False),
        ("https://github.com/herd-itt", "https://evil.example/herd-itt/x.git", False),
        ("git@github.com:", "git@github.com:herd-itt/herd.git", True),
        (None, "https://github.com/herd-itt/herd.git", False),
    ],
)
def test_credentials_only_go_to_the_host_their_secret_names(
    secret_url: str | None, repo_url: str, ok: bool
) -> None:
    assert credentials_match(secret_url, repo_url) is ok


def test_inventory_identity_ignores_the_version() -> None:
    v1 = Key("autoscaling", "v1", "HorizontalPodAutoscaler", "apps", "web")
    v2 = Key("autoscaling", "v2", "HorizontalPodAutoscaler", "apps", "web")
    assert v1 == v2
    assert v2 in {v1}
    assert v1 != Key("autoscaling", "v2", "HorizontalPodAutoscaler", "apps", "api")


def test_comparable_drops_what_the_server_sets() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"a": "1"},
        "status": {"x": 1},
        "metadata": {
            "name": "c",
            "uid": "u",
            "resourceVersion": "9",
            "managedFields": [],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
    }
    assert comparable(live) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"a": "1"},
        "metadata": {"name": "c"},
    }


def test_helm_value_merge_replaces_lists() -> None:
    assert merge({"a": {"b": 1, "l": [1, 2]}, "k": "v"}, {"a": {"c": 2, "l": [3]}}) == {
        "a": {"b": 1, "c": 2, "l": [3]},
        "k": "v",
    }


def test_webhook_signature_and_matching() -> None:
    body = b'{"ref": "refs/heads/dev"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_ok("s3cret", body, good)
    assert not signature_ok("other", body, good)
    assert not signature_ok("s3cret", body, None)
    assert not signature_ok("s3cret", body + b" ", good)

    assert (
        normalize("git@github.com:Herd-ITT/herd.git")
        == normalize("https://github.com/herd-itt/herd")
        == "github.com/herd-itt/herd"
    )
    urls, branch = push_target(
        {
            "ref": "refs/heads/dev",
            "repository": {
                "clone_url": "https://github.com/herd-itt/herd.git",
                "default_branch": "main",
            },
        }
    )
    app = {
        "spec": {"source": {"repoURL": "git@github.com:herd-itt/herd.git", "targetRevision": "dev"}}
    }
    assert branch == "dev" and matches(app, urls, "dev", "main")
    assert not matches(app, urls, "main", "main")
    head = {"spec": {"source": {"repoURL": "https://github.com/herd-itt/herd"}}}
    assert matches(head, urls, "main", "main") and not matches(head, urls, "dev", "main")


def test_sync_retry_backs_off_then_stops() -> None:
    import datetime as dt

    from herd_operator.handlers.application.reconciler import _retry

    spec = {
        "syncPolicy": {
            "retry": {"limit": 3, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "12s"}}
        }
    }
    first = _retry(spec, {}, new_revision=True)
    assert first["retryCount"] == 0
    at = dt.datetime.fromisoformat(first["nextRetryAt"].replace("Z", "+00:00"))
    assert 3 <= (at - dt.datetime.now(dt.UTC)).total_seconds() <= 6
    second = _retry(spec, first, new_revision=False)
    at = dt.datetime.fromisoformat(second["nextRetryAt"].replace("Z", "+00:00"))
    assert second["retryCount"] == 1
    assert 8 <= (at - dt.datetime.now(dt.UTC)).total_seconds() <= 11  # 5s * 2
    third = _retry(spec, second, new_revision=False)
    at = dt.datetime.fromisoformat(third["nextRetryAt"].replace("Z", "+00:00"))
    assert (at - dt.datetime.now(dt.UTC)).total_seconds() <= 12.5  # capped at maxDuration
    assert _retry(spec, third, new_revision=False) == {"retryCount": 3, "nextRetryAt": None}


def test_credentials_from_a_secret_never_show_in_repr() -> None:
    import base64

    from herd_operator.gitops.git import Credentials

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    creds = Credentials.from_secret({"username": b64("bot"), "password": b64("s3cret")})
    assert (creds.username, creds.password, creds.ssh_private_key) == ("bot", "s3cret", None)
    assert "s3cret" not in repr(creds)
    key = Credentials.from_secret({"sshPrivateKey": b64("-----BEGIN KEY-----")})
    assert key.ssh_private_key == "-----BEGIN KEY-----" and "BEGIN" not in repr(key)


# -- rendering: hostile sources ---------------------------------------------------------
def _manifests(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / "m" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "m" / name).write_text(text)
    return tmp_path


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"


@pytest.mark.parametrize(
    ("files", "limits", "message"),
    [
        ({"a.yaml": "x: &x [1, 2]\ny: *x\n"}, Limits(), "YAML aliases"),
        ({"a.yaml": "42\n"}, Limits(), "not an object"),
        ({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"}, Limits(), "not an object"),
        ({"a.yaml": "apiVersion: 1\nkind: X\nmetadata: {name: a}\n"}, Limits(), "not an object"),
        (
            {"a.yaml": "---\n".join(CM.format(f"c{i}") for i in range(4))},
            Limits(max_objects=3),
            "renders 4 objects, more than the limit of 3",
        ),
        (
            {"a.yaml": CM.format("big") + "data:\n  k: " + "x" * 500 + "\n"},
            Limits(max_bytes=100),
            "larger than the limit of 100 bytes",
        ),
        (
            {"a.yaml": "apiVersion: v1\nkind: List\nitems: [7]\n"},
            Limits(),
            "not an object",
        ),
    ],
)
def test_hostile_manifests_are_refused(
    tmp_path: Path, files: dict[str, str], limits: Limits, message: str
) -> None:
    repo = _manifests(tmp_path, files)
    with pytest.raises(RenderError, match=re.escape(message)):
        render(repo, Source(path="m"), "ns", Path("/nonexistent/helm"), limits=limits)


def test_lists_and_plain_objects_render(tmp_path: Path) -> None:
    repo = _manifests(
        tmp_path,
        {
            "a.yaml": CM.format("a") + "---\n" + CM.format("b"),
            "l.yaml": "apiVersion: v1\nkind: List\nitems:\n- "
            + CM.format("c").replace("\n", "\n  "),
        },
    )
    objects = render(repo, Source(path="m"), "ns", Path("/nonexistent/helm"))
    assert [o["metadata"]["name"] for o in objects] == ["a", "b", "c"]


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_helm_output_may_use_anchors_but_not_explode(tmp_path: Path) -> None:
    # Our own CRD schemas use anchors: Helm output keeps them, under a node cap.
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        CM.format("anchored") + "data:\n  a: &v hello\n  b: *v\n"
    )
    helm = binary("helm")
    objects = render(tmp_path, Source(path="c", release_name="r"), "ns", helm)
    assert objects[0]["data"] == {"a": "hello", "b": "hello"}
    # 380 bytes of nested aliases expand to 387 million nodes: Helm refuses them itself (Go
    # yaml's alias limit); our own cap is the second fence, should a Helm let them through.
    (chart / "templates" / "bomb.yaml").write_text(
        CM.format("bomb") + "data:\n  " + BOMB.replace("\n", "\n  ")
    )
    with pytest.raises(RenderError, match=r"excessive aliasing|YAML expands to more than"):
        render(tmp_path, Source(path="c", release_name="r"), "ns", helm)
    with pytest.raises(yaml.YAMLError, match="YAML expands to more than 1000000 nodes"):
        list(load_all_capped(BOMB, 1_000_000))
    assert list(load_all_capped("a: &x {k: [1, 2]}\nb: *x\n", 13)) == [
        {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}
    ]
    with pytest.raises(yaml.YAMLError, match="more than 12 nodes"):
        list(load_all_capped("a: &x {k: [1, 2]}\nb: *x\n", 12))
    # Without aliases the libyaml path counts as the pure-Python one: 9 nodes.
    plain = "a: {k: [1, 2]}\nb: x\n"
    assert list(load_all_capped(plain, 9)) == [{"a": {"k": [1, 2]}, "b": "x"}]
    with pytest.raises(yaml.YAMLError, match="more than 8 nodes"):
        list(load_all_capped(plain, 8))
    # Value files and inline values: no aliases at all.
    (chart / "templates" / "bomb.yaml").unlink()
    with pytest.raises(RenderError, match="YAML aliases"):
        render(tmp_path, Source(path="c", release_name="r", values="x: &x 1\ny: *x\n"), "ns", helm)


def test_a_push_wakes_each_matching_application_once_in_memory() -> None:
    """The webhook matches Applications from the watch's own copy, and queues each once
    however often it is asked for while it waits; one asked for while it runs runs again."""
    import asyncio

    import kopf

    from herd_operator.handlers.application import wakes

    def app(name: str, repo: str, revision: str) -> kopf.Body:
        return kopf.Body(
            {
                "metadata": {"namespace": "apps", "name": name, "uid": name},
                "spec": {"source": {"repoURL": repo, "targetRevision": revision}},
                "status": {"sync": {"status": "Synced"}},
            }
        )

    a, b = app("a", "https://git.example/r.git", "dev"), app("b", "https://git.example/r", "main")
    c = app("c", "https://git.example/other.git", "dev")
    for body in (a, b, c):
        assert wakes.changes("ADDED", body)
        asyncio.run(wakes.seen(type="ADDED", body=body))
    assert not wakes.changes("MODIFIED", a)  # a status write: nothing a push needs
    assert wakes.matching({"git.example/r"}, "dev", "main") == ["apps/a"]
    assert wakes.matching({"git.example/r"}, "main", "main") == ["apps/b"]

    runs: list[str] = []
    refresher, started, release, done = held_refresher(3, lambda key, _: runs.append(key))
    refresher.request(["apps/a"])
    assert started.wait(5)
    refresher.request(["apps/b", "apps/b", "apps/a"])  # a runs: asked again, it runs again
    refresher.request(["apps/b"])  # b waits: once
    release.set()
    assert done.wait(5)
    assert sorted(runs) == ["apps/a", "apps/a", "apps/b"]
    for body in (a, b, c):
        asyncio.run(wakes.seen(type="DELETED", body=body))
    assert wakes.matching({"git.example/r"}, "dev", "main") == []


def held_refresher(calls: int, record: Callable[[str, bool], object]) -> tuple[Any, ...]:
    """A one-thread Refresher that records each reconcile, holding the first (`started`)
    until `release` so later requests queue behind it; `done` after `calls` reconciles."""
    import threading

    from herd_operator.handlers.application import wakes

    started, release, done = threading.Event(), threading.Event(), threading.Event()
    count = 0

    def reconcile(key: str, if_due: bool) -> None:
        nonlocal count
        record(key, if_due)
        count += 1
        if count == 1:
            started.set()
            assert release.wait(5)
        if count == calls:
            done.set()

    return wakes.Refresher(reconcile, workers=1), started, release, done


def test_a_woken_app_reconciles_with_its_push_moment() -> None:
    """Each queued app carries the moment a fetch must have begun after (git.fresh_since):
    the push's; asked again while it waits, the later one; asked without one, none."""

    from herd_operator.gitops import git

    seen: list[tuple[str, int | None]] = []
    refresher, started, release, done = held_refresher(
        4, lambda key, _: seen.append((key, git.fresh_since.get()))
    )
    refresher.request(["apps/first"], since=1)
    assert started.wait(5)
    refresher.request(["apps/a", "apps/b", "apps/c"], since=5)
    refresher.request(["apps/a"], since=9)  # a later push: the later moment
    refresher.request(["apps/b"])  # no moment (a reshard): a fetch of its own
    refresher.request(["apps/c"], since=3)  # an earlier one: 5 still holds
    release.set()
    assert done.wait(5)
    assert seen == [("apps/first", 1), ("apps/a", 9), ("apps/b", None), ("apps/c", 5)]
    assert git.fresh_since.get() is None  # reset after each


def test_a_poll_tick_queues_only_if_due_and_never_beside_its_own_reconcile() -> None:
    """A tick asks for a reconcile if due (checked again when read fresh); a tick for an app
    whose reconcile runs is dropped (that reconcile is the poll); a push's ask for an app a
    tick queued makes it a reconcile in any case."""

    seen: list[tuple[str, bool]] = []
    refresher, started, release, done = held_refresher(
        3, lambda key, if_due: seen.append((key, if_due))
    )
    refresher.request(["apps/a"], if_due=True)
    assert started.wait(5)
    refresher.request(["apps/a"], if_due=True)  # a runs: this tick is dropped
    refresher.request(["apps/b"], if_due=True)
    refresher.request(["apps/c"], if_due=True)
    refresher.request(["apps/c"], since=4)  # a push for c: no longer only if due
    release.set()
    assert done.wait(5)
    assert seen == [("apps/a", True), ("apps/b", True), ("apps/c", False)]


def test_what_a_checkout_holds() -> None:
    """Rendering reads the source's folder and its value files (relative to it): a checkout
    holds those, in normal form; a path out of the repository is no path at all."""
    from herd_operator.gitops.git import checkout_paths

    source = Source(
        "charts/web",
        value_files=("values-dev.yaml", "../../apps/web/values.yaml", "/etc/passwd", "../../../x"),
    )
    assert checkout_paths(source.reads()) == (
        "apps/web/values.yaml",
        "charts/web",
        "charts/web/values-dev.yaml",
    )
    assert checkout_paths(Source(".", value_files=("a.yaml",)).reads()) == (".",)
    assert checkout_paths(["./m/", "m", "m/../n"]) == ("m", "n")
    assert checkout_paths(["", "x"]) == (".",) == checkout_paths(["x", "x/.."])


@pytest.mark.parametrize(
    ("obj", "expected", "says"),
    [
        # An Argo Rollout with no controller to observe it is never Healthy.
        (
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"generation": 1},
            },
            health.PROGRESSING,
            "controller",
        ),
        (
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"generation": 2},
                "status": {"observedGeneration": "2", "phase": "Degraded", "message": "bad pod"},
            },
            health.DEGRADED,
            "bad pod",
        ),
        (
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"generation": 2},
                "status": {"observedGeneration": 2, "phase": "Healthy"},
            },
            health.HEALTHY,
            "",
        ),
        (
            {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {}},
            health.PROGRESSING,
            "waiting",
        ),
        (
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {},
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "False", "message": "issuer not found"}
                    ]
                },
            },
            health.DEGRADED,
            "issuer not found",
        ),
        (
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "ClusterIssuer",
                "metadata": {},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
            health.HEALTHY,
            "",
        ),
        # A child Application that cannot render is its parent's error, not a wait.
        (
            {
                "apiVersion": "platform.herd-itt.com/v1alpha1",
                "kind": "Application",
                "metadata": {},
                "status": {
                    "conditions": [{"type": "ComparisonError", "message": "x.yaml: not YAML"}]
                },
            },
            health.DEGRADED,
            "ComparisonError: x.yaml: not YAML",
        ),
        (
            {"apiVersion": "platform.herd-itt.com/v1alpha1", "kind": "Application", "metadata": {}},
            health.PROGRESSING,
            "",
        ),
        # An unknown kind whose own status says it failed.
        (
            {"apiVersion": "example.com/v1", "kind": "Thing", "status": {"phase": "Failed"}},
            health.DEGRADED,
            "Failed",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                    ],
                },
            },
            health.DEGRADED,
            "CrashLoopBackOff",
        ),
    ],
)
def test_health_of_common_custom_resources(obj: dict[str, Any], expected: str, says: str) -> None:
    status, message = health.of(obj)
    assert status == expected and says in message


def test_the_poll_timers_routine_runs_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Kopf logs each timer run at INFO: 1,000 Applications would fill the log with them.
    The poll's are dropped; its failures, and every other handler's lines, are kept."""
    import logging

    import kopf

    from herd_operator import main

    main.configure_kopf(kopf.OperatorSettings())
    body = kopf.Body({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "uid": "u"}})
    objects = kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings())
    with caplog.at_level(logging.DEBUG, logger="kopf.objects"):
        objects.info("Timer 'application_poll' succeeded.")
        objects.info("Handler 'tenant_reconcile' succeeded.")
        objects.error("Timer 'application_poll' failed with an exception and will try again")
    assert [r.getMessage()[:30] for r in caplog.records] == [
        "Handler 'tenant_reconcile' suc",
        "Timer 'application_poll' faile",
    ]


def test_exclusive_says_whether_it_waited_for_another_handler() -> None:
    """A reconcile reads its Application again under the lock only if another handler held
    it meanwhile (what that one did may have changed it); otherwise its read just before is
    as fresh, and the second GET per reconcile is saved."""
    import threading

    from herd_operator.handlers.common import exclusive

    with exclusive("uid-1") as waited:
        assert waited is False
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with exclusive("uid-1"):
            held.set()
            assert release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(5)
    threading.Timer(0.1, release.set).start()
    with exclusive("uid-1") as waited:
        assert waited is True
    thread.join(5)
    with exclusive("uid-2") as waited:
        assert waited is False
