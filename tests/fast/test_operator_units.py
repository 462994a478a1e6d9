"""Pure parts of the operator: the compact diff base, the adoption namespace rule and what a
status write sends."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import kopf
import pytest

from herd_core import kube
from herd_devkit.settings import Settings
from herd_operator.diffbase import BUDGET, DigestDiffBaseStorage, bounded, digest_long_strings
from herd_operator.handlers.adoption import namespace_may_adopt
from herd_operator.handlers.common import Object


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


def test_the_diff_base_is_bounded_whatever_the_shape() -> None:
    """Many short strings (each under LONG) add up: the largest maps and lists go to digests
    until the whole fits, and a change inside one is still a change."""
    storage = DigestDiffBaseStorage(prefix="platform.herd-itt.com")

    def many(changed: str = "v") -> kopf.Body:
        data = {f"k{i}": "v" * 1000 for i in range(300)}
        data["k7"] = changed * 1000
        return kopf.Body({"metadata": {"name": "t"}, "spec": {"subject": "Hi", "testData": data}})

    essence = storage.build(body=many())
    assert len(json.dumps(essence)) <= BUDGET
    assert essence["spec"]["subject"] == "Hi"  # what fits stays as it is
    assert str(essence["spec"]["testData"]).startswith("sha256:")
    assert storage.build(body=many("w")) != essence
    assert storage.build(body=many()) == essence
    # A map of thousands of short scalars digests whole: nothing smaller inside to take.
    wide = {"spec": {f"k{i}": "y" * 100 for i in range(2000)}}
    assert len(json.dumps(bounded(wide))) <= BUDGET


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


def test_a_status_write_sends_only_the_fields_that_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big Application's resources (thousands) are not re-sent for a new reconciledAt."""
    resources = [{"kind": "ConfigMap", "name": f"cm-{i}", "status": "Synced"} for i in range(2000)]
    stored: dict[str, Any] = {
        "apiVersion": "platform.herd-itt.com/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7"},
        "status": {"resources": resources, "reconciledAt": "t1", "gone": "x"},
    }
    sent: list[tuple[dict[str, Any], str | None]] = []

    def patch_status(
        plural: str, namespace: str, name: str, status: dict[str, Any], version: str | None = None
    ) -> dict[str, Any]:
        sent.append((copy.deepcopy(status), version))
        for key, value in status.items():
            if value is None:
                stored["status"].pop(key, None)
            else:
                stored["status"][key] = value
        return copy.deepcopy(stored)

    monkeypatch.setattr(kube, "patch_status", patch_status)
    obj = Object("Application", "applications", kopf.Body(copy.deepcopy(stored)))

    obj.patch_status(resources=copy.deepcopy(resources), reconciledAt="t2", gone=None)
    assert sent == [({"reconciledAt": "t2", "gone": None}, None)]

    obj.set_conditions(("Ready", True, "Synced", "ok"))
    ((status, version),) = sent[1:]
    assert set(status) == {"conditions"} and version == "7"  # a list replaced whole: guarded

    obj.patch_status(resources=resources[:1], reconciledAt="t2")
    assert sent[2] == ({"resources": resources[:1]}, None)
    assert stored["status"]["resources"] == resources[:1]


def child_event(tenant_uid: str, ready: str | None) -> kopf.Body:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready, "reason": "R"}]
    return kopf.Body(
        {
            "metadata": {
                "name": "acme-app",
                "namespace": "tenants",
                "uid": "child-uid",
                "ownerReferences": [{"kind": "Tenant", "name": "acme", "uid": tenant_uid}],
            },
            "status": {"conditions": conditions},
        }
    )


def test_a_waiting_tenant_takes_its_childs_new_state_and_nothing_else() -> None:
    """The in-place wait of a Tenant for its new CognitoClient: it ends on the child's first
    state, not on an event that leaves the state as recorded, and times out otherwise; while
    it waits, no child event asks for the annotation wake."""
    from herd_operator.handlers.tenant import waits, wakes

    async def scenario() -> None:
        wait = waits.child_waits["t-1"] = waits.ChildWait()
        try:
            creating = ("False", "Creating")
            assert not await waits.child_moved(wait, creating, 0.05)  # no event at all
            # An event of another Tenant's child, or one with no Ready yet, hands nothing over.
            await waits.child_seen(type="MODIFIED", body=child_event("t-2", "True"))
            await waits.child_seen(type="MODIFIED", body=child_event("t-1", None))
            assert not await waits.child_moved(wait, creating, 0.05)
            assert wakes.child_wake("MODIFIED", child_event("t-1", "True")) is None
            moved = asyncio.ensure_future(waits.child_moved(wait, ("False", "R"), 5))
            await waits.child_seen(type="MODIFIED", body=child_event("t-1", "False"))
            await asyncio.sleep(0)
            assert not moved.done()  # the state as the Tenant recorded it: wait on
            await waits.child_seen(type="MODIFIED", body=child_event("t-1", "True"))
            assert await asyncio.wait_for(moved, 5)
        finally:
            del waits.child_waits["t-1"]

    asyncio.run(scenario())


def test_a_childs_state_no_pass_took_wakes_the_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child turns Ready while a Tenant's pass runs, after that pass read it (here a pass
    that does not wait): the handler took the event from the annotation wake, so it wakes
    the Tenant itself as it ends; nothing is lost."""
    from herd_operator.handlers import tenant as flow
    from herd_operator.handlers.tenant import waits, wakes
    from herd_operator.handlers.tenant.reconciler import ChildPending

    tenant = kopf.Body(
        {
            "metadata": {"name": "acme", "namespace": "tenants", "uid": "t-9"},
            "status": {"conditions": [{"type": "AppClient", "status": "False", "reason": "X"}]},
        }
    )
    woken: list[tuple[str, str]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def first_pass(body: kopf.Body, retry: int, reason: str) -> Any:
            seen = waits.child_seen(type="MODIFIED", body=child_event("t-9", "True"))
            asyncio.run_coroutine_threadsafe(seen, loop).result(5)  # the event, mid-pass
            return Object("Tenant", "tenants", tenant), ChildPending("w", ("False", "X"), False)

        monkeypatch.setattr(flow, "_first_pass", first_pass)
        monkeypatch.setattr(wakes, "wake", lambda ns, name, _stamp: woken.append((ns, name)))
        await flow.on_change(body=tenant, retry=0, reason="update")

    asyncio.run(scenario())
    assert woken == [("tenants", "acme")]
    assert "t-9" not in waits.child_waits
