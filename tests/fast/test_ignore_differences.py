"""ignoreDifferences and the sync options, pure: which pointers a rule names on an object
(managedFieldsManagers through fieldsV1), leaving them out of a comparison, writing their
live values back (RespectIgnoreDifferences), how each object is written."""

from __future__ import annotations

from herd_core.constants import TRACKING_ANNOTATION
from herd_operator.gitops.engine import Item, how, propagation
from herd_operator.gitops.plan import Key, ignored_pointers, respecting, without

KEY = Key("apps", "v1", "Deployment", "ns", "web")


def live() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "managedFields": [
                {"manager": "hpa", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {
                    "manager": "injector",
                    "fieldsV1": {
                        "f:metadata": {"f:annotations": {"f:a/b": {}, ".": {}}},
                        "f:spec": {
                            "f:template": {"f:spec": {"f:containers": {'k:{"name":"x"}': {}}}}
                        },
                    },
                },
                {"manager": "herd-operator", "fieldsV1": {"f:spec": {"f:paused": {}}}},
            ],
        },
        "spec": {"replicas": 7, "paused": False},
    }


def test_rules_name_their_objects_and_managers_their_fields() -> None:
    rules = [
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]},
        {"group": "apps", "kind": "Deployment", "name": "other", "jsonPointers": ["/x"]},
        {"kind": "Deployment", "jsonPointers": ["/core-group-only"]},  # group '' ≠ apps
        {"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["hpa", "injector"]},
    ]
    assert ignored_pointers(rules, KEY, live()) == (
        "/spec/replicas",
        "/metadata/annotations/a~1b",  # RFC 6901: '/' in a key is ~1
        "/spec/template/spec/containers",  # items of a list owned: the whole list
    )
    assert ignored_pointers(rules, KEY, None) == ("/spec/replicas",)


def test_without_and_respecting() -> None:
    desired = {"spec": {"replicas": 2, "paused": True, "items": [1, 2, 3]}, "metadata": {}}
    pointers = ["/spec/replicas", "/spec/items/0", "/spec/items/2", "/spec/absent"]
    assert without(desired, pointers) == {"spec": {"paused": True, "items": [2]}, "metadata": {}}
    assert desired["spec"]["replicas"] == 2  # a copy
    # Live values written back; one the live object lacks is not applied either.
    here = respecting(desired, {"spec": {"replicas": 7}}, ["/spec/replicas", "/spec/paused"])
    assert here["spec"] == {"replicas": 7, "items": [1, 2, 3]}
    # The object's identity and our mark are never taken from the live object.
    mine = {"metadata": {"name": "a", "annotations": {TRACKING_ANNOTATION: "ns_mine:x", "k": "1"}}}
    theirs = {"metadata": {"name": "a", "annotations": {TRACKING_ANNOTATION: "ns_other:x"}}}
    for pointer in (
        "/metadata",
        "/metadata/annotations",
        f"/metadata/annotations/{TRACKING_ANNOTATION.replace('/', '~1')}",
    ):
        assert respecting(mine, theirs, [pointer]) == mine
    assert respecting(mine, theirs, ["/metadata/annotations/k"])["metadata"]["annotations"] == {
        TRACKING_ANNOTATION: "ns_mine:x"
    }
    assert respecting(
        {"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}, ["/metadata/name"]
    ) == {"metadata": {"name": "a"}}


def test_how_each_object_is_written() -> None:
    def item(options: str | None, live_version: str | None) -> Item:
        notes = {"argocd.argoproj.io/sync-options": options} if options else {}
        obj = {"kind": "ConfigMap", "metadata": {"name": "c", "annotations": notes}}
        live = {"metadata": {"resourceVersion": live_version}} if live_version else None
        return Item(KEY, obj, None, live)

    assert not how(set(), item(None, "5")).replace
    assert how({"Replace=true"}, item(None, "5")) == how(set(), item("Replace=true", "5"))
    assert how({"Replace=true"}, item(None, "5")).version == "5"
    assert how({"Replace=true"}, item(None, None)).version is None  # new: a POST
    assert not how({"Replace=true"}, item("Replace=false", "5")).replace  # its own wins
    assert propagation(set()) == "Foreground"  # Argo's default
    assert propagation({"PrunePropagationPolicy=orphan"}) == "Orphan"
    assert propagation({"PrunePropagationPolicy=background"}) == "Background"
