"""SESTemplate through the real parts: API server (schema, CEL), operator process, moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_core import aws
from herd_core.constants import GROUP
from herd_devkit.settings import Settings

from .conftest import ADOPTING
from .faultproxy import FaultProxy
from .helpers import Custom, OperatorProcess, events, wait_for

KIND, PLURAL = "SESTemplate", "sestemplates"
pytestmark = pytest.mark.usefixtures("live_operator")


def unique(prefix: str = "tpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ses_template(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        t: dict[str, Any] = aws.client("ses", settings).get_template(TemplateName=name)["Template"]
    except aws.client("ses", settings).exceptions.TemplateDoesNotExistException:
        return None
    return t


SPEC = {
    "subject": "Welcome to Herd, {{name}}",
    "text": "Hello {{name}}",
    "html": "<p>Hello {{name}}</p>",
}


def test_create_update_delete(objects: Custom, aws_settings: Settings, api: ApiClient) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, SPEC)
    objects.wait_condition(PLURAL, name, "Ready")
    objects.wait_condition(PLURAL, name, "Synced")
    status = objects.get(PLURAL, name)["status"]
    assert status["templateName"] == name
    assert status["observedGeneration"] == 1
    assert ses_template(aws_settings, name) == {
        "TemplateName": name,
        "SubjectPart": SPEC["subject"],
        "TextPart": SPEC["text"],
        "HtmlPart": SPEC["html"],
    }
    # Kopf posts Events from a queue of its own, after the status write at times.
    wait_for(
        lambda: (
            ("Normal", "Created", f"created SES template {name}")
            in events(api, objects.namespace, name)
        ),
        30,
        "the Created event",
    )

    objects.patch(PLURAL, name, {"subject": "Hi {{name}}"})
    wait_for(
        lambda: (ses_template(aws_settings, name) or {}).get("SubjectPart") == "Hi {{name}}",
        30,
        "subject updated in SES",
    )
    wait_for(
        lambda: objects.get(PLURAL, name)["status"].get("observedGeneration") == 2,
        30,
        "observedGeneration 2",
    )

    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    assert ses_template(aws_settings, name) is None


def test_retain_keeps_the_template(objects: Custom, aws_settings: Settings) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, {**SPEC, "deletionPolicy": "Retain"})
    objects.wait_condition(PLURAL, name)
    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    assert ses_template(aws_settings, name) is not None


def test_drift_is_repaired(objects: Custom, aws_settings: Settings, api: ApiClient) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, SPEC)
    objects.wait_condition(PLURAL, name)
    # Someone edits the template in the console...
    aws.client("ses", aws_settings).update_template(
        Template={"TemplateName": name, "SubjectPart": "hacked", "TextPart": "hacked"}
    )
    # ...and the drift timer puts it back, with an Event saying so.
    wait_for(
        lambda: (
            ses_template(aws_settings, name)
            == {
                "TemplateName": name,
                "SubjectPart": SPEC["subject"],
                "TextPart": SPEC["text"],
                "HtmlPart": SPEC["html"],
            }
        ),
        30,
        "template restored",
    )
    wait_for(
        lambda: any(r == "DriftRepaired" for _, r, _ in events(api, objects.namespace, name)),
        30,
        "DriftRepaired event",
    )


def test_adoption_is_explicit_and_only_where_allowed(
    objects: Custom, api: ApiClient, aws_settings: Settings, make_namespace: Callable[[str], str]
) -> None:
    name = unique()
    aws.client("ses", aws_settings).create_template(
        Template={"TemplateName": name, "SubjectPart": "old", "TextPart": "old"}
    )
    objects.create(KIND, PLURAL, name, SPEC)
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AlreadyExists")
    assert "spec.adopt" in cond["message"]
    objects.patch(PLURAL, name, {"adopt": True})
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AdoptionRefused")
    assert "HERD_ADOPTION_NAMESPACES" in cond["message"]
    assert ses_template(aws_settings, name)["SubjectPart"] == "old"  # type: ignore[index]
    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    assert ses_template(aws_settings, name) is not None

    allowed = Custom(api, make_namespace(ADOPTING))
    allowed.create(KIND, PLURAL, name, {**SPEC, "adopt": True})
    allowed.wait_condition(PLURAL, name)
    assert ses_template(aws_settings, name)["SubjectPart"] == SPEC["subject"]  # type: ignore[index]


def test_another_namespace_never_adopts_a_held_template(
    objects: Custom, api: ApiClient, aws_settings: Settings, make_namespace: Callable[[str], str]
) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, SPEC)
    objects.wait_condition(PLURAL, name)
    thief = Custom(api, make_namespace(ADOPTING))
    thief.create(
        KIND, PLURAL, "mine", {"templateName": name, "adopt": True, "subject": "x", "text": "x"}
    )
    cond = thief.wait_condition(PLURAL, "mine", "Ready", "False", reason="AdoptionRefused")
    assert f"{objects.namespace}/{name}" in cond["message"]
    thief.delete(PLURAL, "mine")
    thief.wait_gone(PLURAL, "mine")
    assert ses_template(aws_settings, name)["SubjectPart"] == SPEC["subject"]  # type: ignore[index]


def test_two_namespaces_racing_for_one_name_never_share_the_template(
    objects: Custom,
    api: ApiClient,
    aws_settings: Settings,
    proxy: FaultProxy,
    make_namespace: Callable[[str], str],
) -> None:
    """The first's create is held at the proxy while a second, in another namespace, asks for
    the same name: both found no template. Exactly one may hold it, and neither's deletion
    deletes the other's (a status claim alone let the second update and later delete it)."""
    name = unique()
    first = Custom(api, make_namespace(ADOPTING))  # even a namespace that may adopt
    seen: dict[str, Any] = {}

    def second_meanwhile() -> None:
        objects.create(KIND, PLURAL, name, {**SPEC, "templateName": name, "adopt": True})
        seen.update(
            objects.wait_condition(PLURAL, name, "Ready", "False", reason="AdoptionRefused")
        )

    proxy.before("CreateTemplate", second_meanwhile, contains=name)
    try:
        first.create(KIND, PLURAL, "early", {"templateName": name, "subject": "x", "text": "x"})
        first.wait_condition(PLURAL, "early")
    finally:
        proxy.clear()
    assert f"{first.namespace}/early" in seen["message"]
    assert "templateName" not in objects.get(PLURAL, name).get("status", {})
    assert ses_template(aws_settings, name)["SubjectPart"] == "x"  # type: ignore[index]
    objects.delete(PLURAL, name)
    objects.wait_gone(PLURAL, name)
    assert ses_template(aws_settings, name)["SubjectPart"] == "x"  # type: ignore[index]
    assert first.condition(PLURAL, "early", "Ready")["status"] == "True"

    # Once the holder is gone, the name is free for the next.
    first.delete(PLURAL, "early")
    first.wait_gone(PLURAL, "early")
    assert ses_template(aws_settings, name) is None
    objects.create(KIND, PLURAL, name, {**SPEC, "templateName": name})
    objects.wait_condition(PLURAL, name)
    assert ses_template(aws_settings, name)["SubjectPart"] == SPEC["subject"]  # type: ignore[index]


def test_unparseable_placeholders_are_never_applied(
    objects: Custom, aws_settings: Settings
) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, {"subject": "Hi {{name", "text": "ok"})
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="InvalidSpec")
    assert "subject, line 1: unmatched '{{'" in cond["message"]
    assert ses_template(aws_settings, name) is None

    objects.patch(PLURAL, name, {"subject": "Hi {{name}}"})  # a fixed spec recovers
    objects.wait_condition(PLURAL, name)
    assert ses_template(aws_settings, name) is not None


def test_test_render_reports_the_result(objects: Custom) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, {**SPEC, "testData": {"name": "Ann"}})
    objects.wait_condition(PLURAL, name)
    render = wait_for(
        lambda: objects.get(PLURAL, name)["status"].get("testRender"), 30, "testRender in status"
    )
    assert render["subject"] == "Welcome to Herd, Ann"
    assert render["text"] == "Hello Ann"
    assert render["html"] == "<p>Hello Ann</p>"


def test_throttling_is_retried_with_backoff(
    objects: Custom, aws_settings: Settings, proxy: FaultProxy, api: ApiClient
) -> None:
    name = unique()
    rule = proxy.fail("CreateTemplate", times=2, fault="throttle", contains=name)
    try:
        objects.create(KIND, PLURAL, name, SPEC)
        objects.wait_condition(PLURAL, name, timeout=60)
    finally:
        proxy.clear()
    assert rule.hits == 2
    recoverable = [m for _, r, m in events(api, objects.namespace, name) if r == "Recoverable"]
    assert recoverable and "Throttling" in recoverable[0]
    assert ses_template(aws_settings, name) is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"subject": "no body"}, "at least one of spec.html or spec.text is required"),
        ({"subject": "", "text": "x"}, "spec.subject"),
        ({"subject": "s", "text": "x", "deletionPolicy": "Forget"}, "spec.deletionPolicy"),
        ({"subject": "s", "text": "x", "templateName": "has spaces"}, "spec.templateName"),
        ({"text": "x"}, "spec.subject"),
    ],
)
def test_bad_specs_are_rejected_by_the_api_server(
    objects: Custom, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as err:
        objects.create(KIND, PLURAL, unique(), spec)
    assert err.value.status == 422
    assert message in err.value.body


def test_template_name_is_immutable(objects: Custom) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, {**SPEC, "templateName": f"{name}-a"})
    with pytest.raises(ApiException) as err:
        objects.patch(PLURAL, name, {"templateName": f"{name}-b"})
    assert err.value.status == 422
    assert "spec.templateName is immutable" in err.value.body


def test_restart_mid_create_makes_one_template(
    objects: Custom, aws_settings: Settings, proxy: FaultProxy, live_operator: OperatorProcess
) -> None:
    """SIGKILL the operator right after SES created the template, before it heard back."""
    name = unique()
    proxy.after("CreateTemplate", live_operator.kill, contains=name)
    try:
        objects.create(KIND, PLURAL, name, SPEC)
        wait_for(lambda: not live_operator.running(), 30, "operator killed")
    finally:
        proxy.clear()
    assert ses_template(aws_settings, name) is not None
    assert objects.condition(PLURAL, name, "Ready").get("status") != "True"
    live_operator.start()
    objects.wait_condition(PLURAL, name)
    names = [
        t["Name"] for t in aws.client("ses", aws_settings).list_templates()["TemplatesMetadata"]
    ]
    assert names.count(name) == 1


def test_metrics_count_reconciles(objects: Custom, operator_env: dict[str, str]) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, {"subject": "s", "text": "t {{x"})
    objects.wait_condition(PLURAL, name, "Ready", "False", reason="InvalidSpec")
    url = f"http://127.0.0.1:{operator_env['HERD_METRICS_PORT']}/metrics"
    text = httpx.get(url, timeout=5).text
    assert 'herd_reconcile_total{kind="SESTemplate",result="success"}' in text
    assert 'herd_reconcile_errors_total{kind="SESTemplate",reason="InvalidSpec"}' in text
    assert 'herd_reconcile_duration_seconds_count{kind="SESTemplate"}' in text


def test_a_large_template_is_made_with_one_ses_call(
    objects: Custom, aws_settings: Settings, proxy: FaultProxy
) -> None:
    """300 KB of html: more than annotations may hold, so kopf's diff base must not be a
    verbatim copy (else the create handler repeats, calling SES each time)."""
    name = unique()
    html = "<p>Hello {{name}}</p>" + "<p>" + "x" * 300_000 + "</p>"
    creates = proxy.after("CreateTemplate", lambda: None, times=100, contains=name)
    updates = proxy.after("UpdateTemplate", lambda: None, times=100, contains=name)
    try:
        objects.create(KIND, PLURAL, name, {**SPEC, "html": html})
        objects.wait_condition(PLURAL, name)
        # Kopf records the diff base once the handler is done: from then on it is settled.
        annotation = f"{GROUP}/last-handled-configuration"
        stored = wait_for(
            lambda: (objects.get(PLURAL, name)["metadata"].get("annotations") or {}).get(
                annotation
            ),
            30,
            "diff base stored",
        )
        assert len(stored) < 4096
        assert creates.hits == 1 and updates.hits == 0
        assert ses_template(aws_settings, name)["HtmlPart"] == html  # type: ignore[index]

        # A change inside the long html is still a change.
        objects.patch(PLURAL, name, {"html": html.replace("Hello", "Hi")})
        wait_for(
            lambda: (
                (ses_template(aws_settings, name) or {}).get("HtmlPart", "").startswith("<p>Hi")
            ),
            30,
            "html updated",
        )
        wait_for(
            lambda: objects.get(PLURAL, name)["metadata"]["annotations"][annotation] != stored,
            30,
            "diff base moved on",
        )
        assert creates.hits == 1 and updates.hits == 1
    finally:
        proxy.clear()


def test_many_short_values_keep_the_diff_base_bounded(
    objects: Custom, aws_settings: Settings, proxy: FaultProxy
) -> None:
    """300 testData values of 1,000 characters: no string is long, yet together they are
    300 KB, more than annotations may hold. The diff base is bounded whatever the shape, so
    it is stored, and the template is made once (before: the store failed on every pass and
    the create handler looped)."""
    name = unique()
    data = {f"value{i}": "v" * 1000 for i in range(300)}
    creates = proxy.after("CreateTemplate", lambda: None, times=100, contains=name)
    try:
        objects.create(KIND, PLURAL, name, {**SPEC, "testData": data})
        objects.wait_condition(PLURAL, name)
        annotation = f"{GROUP}/last-handled-configuration"
        stored = wait_for(
            lambda: (objects.get(PLURAL, name)["metadata"].get("annotations") or {}).get(
                annotation
            ),
            30,
            "diff base stored",
        )
        assert len(stored) < 20 * 1024
        assert creates.hits == 1
        # A change of one short value is still a change: the test render runs again.
        first = objects.get(PLURAL, name)["status"]["testRender"]["renderedTime"]
        objects.patch(PLURAL, name, {"testData": {**data, "value7": "w" * 1000}})
        wait_for(
            lambda: objects.get(PLURAL, name)["metadata"]["annotations"][annotation] != stored,
            30,
            "diff base moved on",
        )
        assert objects.get(PLURAL, name)["status"]["testRender"]["renderedTime"] >= first
        assert creates.hits == 1
    finally:
        proxy.clear()


def test_deletion_keeps_the_finalizer_until_the_template_is_gone(
    objects: Custom, aws_settings: Settings, proxy: FaultProxy
) -> None:
    name = unique()
    objects.create(KIND, PLURAL, name, SPEC)
    objects.wait_condition(PLURAL, name)
    # Refused until the checks below are done (a count of refusals would race them: the
    # operator's next try may come before the test's paced read of the template).
    refused = proxy.fail("DeleteTemplate", times=10**6, fault="invalid", contains=name)
    try:
        objects.delete(PLURAL, name)
        # An error no retry seems to mend: the object stays, saying what blocks.
        cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="DeletionBlocked")
        assert "InvalidParameterValue" in cond["message"]
        assert ses_template(aws_settings, name) is not None
        assert objects.exists(PLURAL, name)  # its finalizer holds it
    finally:
        proxy.clear()
    # Mended: the next try deletes the template, and only then the object goes.
    objects.wait_gone(PLURAL, name, timeout=60)
    assert refused.hits >= 1
    assert ses_template(aws_settings, name) is None


def test_a_restart_passes_over_ready_objects_and_resumes_a_changed_one(
    objects: Custom,
    aws_settings: Settings,
    live_operator: OperatorProcess,
    operator_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """After a restart, an object Ready at its generation takes no handler run (no worker
    thread, no log line, no AWS call: 20,000 of them made a restart take a minute); one
    changed while the operator was down is reconciled."""
    still, changed = unique(), unique()
    # An operator of this namespace alone, with JSON logs, which name each line's object.
    own = OperatorProcess(
        args=("operator", "run", "--verbose", "--json-logs", "--namespace", objects.namespace),
        env=operator_env,
        log=tmp_path / "operator.log",
    )
    live_operator.stop()
    try:
        own.start()
        for name in (still, changed):
            objects.create(KIND, PLURAL, name, SPEC)
        for name in (still, changed):
            objects.wait_condition(PLURAL, name)
        own.stop()
        objects.patch(PLURAL, changed, {"subject": "Changed while the operator was down"})
        start = len(own.log_text().splitlines())
        own.start()
        wait_for(
            lambda: (
                objects.get(PLURAL, changed)["status"].get("observedGeneration") == 2
                and (ses_template(aws_settings, changed) or {}).get("SubjectPart")
                == "Changed while the operator was down"
            ),
            60,
            "the template changed while the operator was down",
        )

        def lines_of(name: str) -> list[str]:
            found = []
            for line in own.log_text().splitlines()[start:]:
                record = json.loads(line) if line.startswith("{") else {}
                if (record.get("object") or {}).get("name") == name:
                    found.append(record["message"])
            return found

        # Kopf saw the Ready one (its debug line) and ran nothing for it.
        wait_for(
            lambda: any(m.startswith("Resuming is in progress") for m in lines_of(still)),
            30,
            "the Ready template seen after the restart",
        )
        assert not [m for m in lines_of(still) if m.startswith("Handler ")], lines_of(still)
        assert "Handler 'sestemplate_reconcile' succeeded." in lines_of(changed)
    finally:
        own.stop()
        live_operator.start()
