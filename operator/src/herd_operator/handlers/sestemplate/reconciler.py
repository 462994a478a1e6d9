"""SESTemplate's work: an SES email template, reconciled with the SES v1 template API."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from herd_core import conditions as cond
from herd_core.errors import AdoptionRefused, AlreadyExists, InvalidSpec
from herd_core.ses import SES, Template, already_exists
from herd_operator.handlers import adoption, nameclaims
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


def _scope(spec: dict[str, Any], settings: Settings) -> str:
    return str(spec.get("region") or settings.aws_region)  # SES template names are regional


def _taken(spec: dict[str, Any], want: Template, holder: tuple[str, str]) -> InvalidSpec:
    message = f"SES template {want.name} belongs to {KIND} {holder[0]}/{holder[1]}"
    if spec.get("adopt"):
        return AdoptionRefused(f"{message}; it is never adopted by another")
    return AlreadyExists(f"{message}; it is never shared")


def reconcile(obj: Object, settings: Settings) -> str:
    spec = obj.spec
    want = desired(spec, obj.name, settings)  # validates before any AWS call
    # The name's claim before any AWS call: of two resources asking at once, one holds it.
    if holder := nameclaims.claim(obj, want.name, _scope(spec, settings), settings):
        if obj.status.get("templateName") == want.name:  # a claim from before the Leases
            obj.patch_status(templateName=None)  # so our deletion never deletes theirs
            obj.flush()
        raise _taken(spec, want, holder)
    try:
        return _reconcile(obj, want, settings)
    except (AlreadyExists, AdoptionRefused):
        nameclaims.release(obj, want.name, _scope(spec, settings), settings)
        raise


def _reconcile(obj: Object, want: Template, settings: Settings) -> str:
    spec, status = obj.spec, obj.status
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
            ses.update(want)  # our own create, landed before a crash (the name is ours)
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
    if holder := nameclaims.claim(obj, want.name, _scope(obj.spec, settings), settings):
        # Another resource holds the name: never put ours back over theirs.
        err = _taken(obj.spec, want, holder)
        obj.set_conditions((cond.READY, False, err.reason, str(err)))
        obj.event(err.reason, str(err), warning=True)
        return
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
    scope = _scope(obj.spec, settings)
    if not name:  # nothing was ever created; a claim made just before a crash goes
        asked = obj.spec.get("templateName") or f"{settings.aws_name_prefix}{obj.name}"
        nameclaims.release(obj, asked, scope, settings)
        return
    if nameclaims.holds(obj, name, scope, settings) is False:
        return  # another resource's now: theirs to keep
    if obj.spec.get("deletionPolicy") == "Retain":
        obj.event("Retained", f"deletionPolicy Retain: SES template {name} kept")
    else:
        SES(settings, region=obj.spec.get("region")).delete(name)
        obj.event("Deleted", f"deleted SES template {name}")
    nameclaims.release(obj, name, scope, settings)
