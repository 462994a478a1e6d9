"""SESTemplate's work: an SES email template, reconciled with the SES v1 template API."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from herd_core import conditions as cond
from herd_core.errors import AlreadyExists, InvalidSpec
from herd_core.ses import SES, Template, already_exists
from herd_operator.handlers import adoption
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings
from herd_operator.templates import TemplateError, check

KIND = "SESTemplate"
PLURAL = "sestemplates"


def desired(spec: dict[str, Any], name: str, settings: Settings) -> Template:
    """The template the spec asks for; InvalidSpec when a placeholder does not parse."""
    template = Template(
        name=spec.get("templateName") or f"{settings.aws_name_prefix}{name}",
        subject=spec["subject"],
        html=spec.get("html"),
        text=spec.get("text"),
    )
    if template.html is None and template.text is None:
        raise InvalidSpec("at least one of spec.html or spec.text is required")
    try:
        for part in ("subject", "html", "text"):
            value = getattr(template, part)
            if value is not None:
                check(part, value)
    except TemplateError as err:
        raise InvalidSpec(f"template does not parse: {err}") from err
    return template


def differences(want: Template, have: Template) -> list[str]:
    return [p for p in ("subject", "html", "text") if getattr(want, p) != getattr(have, p)]


def reconcile(obj: Object, settings: Settings) -> str:
    spec, status = obj.spec, obj.status
    want = desired(spec, obj.name, settings)  # validates before any AWS call
    ses = SES(settings, region=spec.get("region"))
    owned = status.get("templateName") == want.name
    have = ses.get(want.name)
    if have is None:
        if not owned:
            # Claim the name first: after a crash right after the create, we know it is ours.
            obj.patch_status(templateName=want.name)
            obj.flush()
        try:
            ses.create(want)
            obj.event("Created", f"created SES template {want.name}")
        except ClientError as err:
            if not already_exists(err):
                raise
            ses.update(want)  # a create that landed before a crash
    elif not owned:
        if not spec.get("adopt"):
            raise AlreadyExists(
                f"SES template {want.name} already exists; set spec.adopt: true to take it over"
            )
        adoption.check(obj, "templateName", want.name, f"SES template {want.name}", settings)
        obj.patch_status(templateName=want.name)
        obj.flush()
        if differences(want, have):
            ses.update(want)
        obj.event("Adopted", f"adopted existing SES template {want.name}")
    elif changed := differences(want, have):
        ses.update(want)
        obj.event("Updated", f"updated {', '.join(changed)} of SES template {want.name}")

    if spec.get("testData") is not None:
        test_render(obj, ses, want.name, spec["testData"])
    return f"SES template {want.name} is in sync"


def test_render(obj: Object, ses: SES, name: str, data: dict[str, Any]) -> None:
    try:
        rendered = ses.render(name, data)
    except ClientError as err:
        message = err.response.get("Error", {}).get("Message") or str(err)
        obj.patch_status(testRender={"error": message, "renderedTime": cond.now()})
        obj.event(
            "TestRenderFailed", f"SES could not render the test data: {message}", warning=True
        )
        return
    result = {"subject": rendered.subject, "renderedTime": cond.now(), "error": None}
    if rendered.html is not None:
        result["html"] = rendered.html
    if rendered.text is not None:
        result["text"] = rendered.text
    obj.patch_status(testRender=result)


def repair_drift(obj: Object, settings: Settings) -> None:
    """Put the template back if someone changed or deleted it outside Kubernetes."""
    status = obj.status
    if status.get("observedGeneration") != obj.generation or not cond.is_true(
        status.get("conditions"), cond.READY
    ):
        return  # the regular reconcile owns objects that are not in sync yet
    want = desired(obj.spec, obj.name, settings)
    ses = SES(settings, region=obj.spec.get("region"))
    have = ses.get(want.name)
    if have is None:
        ses.create(want)
        obj.event(
            "DriftRepaired",
            f"SES template {want.name} was deleted outside Herd; created it again",
            warning=True,
        )
    elif changed := differences(want, have):
        ses.update(want)
        obj.event(
            "DriftRepaired",
            f"{', '.join(changed)} of SES template {want.name} changed outside Herd; put back",
            warning=True,
        )
    else:
        return
    obj.patch_status(lastSyncedTime=cond.now())


def delete(obj: Object, settings: Settings) -> None:
    name = obj.status.get("templateName")
    if not name:
        return  # nothing was ever created
    if obj.spec.get("deletionPolicy") == "Retain":
        obj.event("Retained", f"deletionPolicy Retain: SES template {name} kept")
        return
    SES(settings, region=obj.spec.get("region")).delete(name)
    obj.event("Deleted", f"deleted SES template {name}")
