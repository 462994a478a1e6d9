"""SESTemplate through the real parts: API server (schema, CEL), operator process, moto."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from herd_operator import aws
from herd_operator.settings import Settings

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
    assert ("Normal", "Created", f"created SES template {name}") in events(
        api, objects.namespace, name
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


def test_adoption_is_explicit(objects: Custom, aws_settings: Settings) -> None:
    name = unique()
    aws.client("ses", aws_settings).create_template(
        Template={"TemplateName": name, "SubjectPart": "old", "TextPart": "old"}
    )
    objects.create(KIND, PLURAL, name, SPEC)
    cond = objects.wait_condition(PLURAL, name, "Ready", "False", reason="AlreadyExists")
    assert "spec.adopt" in cond["message"]
    assert ses_template(aws_settings, name)["SubjectPart"] == "old"  # type: ignore[index]

    objects.patch(PLURAL, name, {"adopt": True})
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
