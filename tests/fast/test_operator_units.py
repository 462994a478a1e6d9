"""Pure parts of the operator: the compact diff base and the adoption namespace rule."""

from __future__ import annotations

import json

import kopf

from herd_devkit.settings import Settings
from herd_operator.diffbase import DigestDiffBaseStorage, digest_long_strings
from herd_operator.handlers.adoption import namespace_may_adopt


def body(html: str) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "platform.herd-itt.com/v1alpha1",
            "kind": "SESTemplate",
            "metadata": {"name": "t", "annotations": {}},
            "spec": {"subject": "Hi", "html": html, "testData": {"items": ["x" * 2000]}},
        }
    )


def test_the_diff_base_stays_small_and_still_sees_changes() -> None:
    storage = DigestDiffBaseStorage(prefix="platform.herd-itt.com")
    big = "<p>" + "x" * 300_000 + "</p>"
    essence = storage.build(body=body(big))
    assert len(json.dumps(essence)) < 1024
    assert essence["spec"]["subject"] == "Hi"  # short values stay as they are
    changed = storage.build(body=body(big.replace("x", "y", 1)))
    assert changed != essence
    assert storage.build(body=body(big)) == essence


def test_digests_reach_into_lists_and_maps() -> None:
    value = {"a": ["s" * 2000, 1, {"b": "t" * 2000}], "c": "short"}
    out = digest_long_strings(value)
    assert out["a"][0].startswith("sha256:") and out["a"][0].endswith(":2000")
    assert out["a"][1] == 1 and out["a"][2]["b"].startswith("sha256:")
    assert out["c"] == "short"


def test_namespaces_may_adopt_only_when_listed() -> None:
    assert not namespace_may_adopt("team-a", Settings(adoption_namespaces=[]))
    allowed = Settings(adoption_namespaces=["platform", "adopt-*"])
    assert namespace_may_adopt("platform", allowed)
    assert namespace_may_adopt("adopt-x1", allowed)
    assert not namespace_may_adopt("tenants", allowed)
    assert not namespace_may_adopt("Adopt-x1", allowed)
