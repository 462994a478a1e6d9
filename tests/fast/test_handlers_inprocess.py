"""The operator's reconcile steps in this process: AWS is moto in-process, the custom object
a fake that keeps its status and events in memory (kopf and the API server are the real-parts
tests' business: test_sestemplate.py, test_tenant.py)."""

from __future__ import annotations

import json
from typing import Any

import kopf
import pytest
from botocore.exceptions import ClientError

from herd_core import aws as aws_clients
from herd_core import conditions as cond
from herd_core import kube
from herd_core.constants import API_VERSION
from herd_core.errors import AdoptionRefused, AlreadyExists, InvalidSpec, Recoverable
from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings
from herd_operator.handlers import common, nameclaims
from herd_operator.handlers.common import Object
from herd_operator.handlers.sestemplate import reconciler as sestemplate
from herd_operator.handlers.tenant import reconciler as tenant
from herd_operator.settings import Settings as OperatorSettings


class FakeObject(Object):
    """An Object whose writes land in its own body, and whose events are kept in a list."""

    def __init__(self, kind: str, plural: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": "tenants", "uid": f"uid-{name}"},
            "spec": spec,
            "status": {},
        }
        super().__init__(kind, plural, kopf.Body(body))
        self.raw = body
        self.events: list[tuple[str, bool]] = []

    def patch_status(self, **fields: Any) -> None:
        self.raw["status"] |= json.loads(json.dumps(fields))

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, warning))

    def set_conditions(self, *updates: tuple[str, bool | None, str, str]) -> None:
        conditions = self.raw["status"].get("conditions")
        for type_, status, reason, message in updates:
            conditions = cond.set_condition(conditions, type_, status, reason, message)
        self.raw["status"]["conditions"] = conditions

    def condition(self, type_: str) -> dict[str, Any]:
        return dict(cond.get(self.raw["status"].get("conditions"), type_) or {})

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.events]


@pytest.fixture(autouse=True)
def name_claims(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The name claims (Leases on the API server, test_sestemplate.py) as a dict here."""
    held: dict[str, str] = {}

    def mine(obj: Object) -> str:
        return f"{obj.namespace}/{obj.name}"

    def claim(obj: Object, name: str, scope: str, _: Any) -> tuple[str, str] | None:
        holder = held.setdefault(f"{scope}/{name}", mine(obj))
        return None if holder == mine(obj) else (holder.split("/")[0], holder.split("/")[1])

    def holds(obj: Object, name: str, scope: str, _: Any) -> bool | None:
        holder = held.get(f"{scope}/{name}")
        return None if holder is None else holder == mine(obj)

    def release(obj: Object, name: str, scope: str, _: Any) -> None:
        if held.get(f"{scope}/{name}") == mine(obj):
            del held[f"{scope}/{name}"]

    for fake in (claim, holds, release):
        monkeypatch.setattr(nameclaims, fake.__name__, fake)
    return held


@pytest.fixture
def settings(aws: Settings, aws_side: bootstrap.Environment) -> OperatorSettings:
    return OperatorSettings(
        **{k.removeprefix("HERD_").lower(): v for k, v in aws_side.env().items()},
        aws_region=aws.aws_region,
        aws_max_attempts=1,
        aws_name_prefix=aws.aws_name_prefix,
        login_url_template="https://platform.example.com/?realm={slug}",
    )


def template(**spec: Any) -> FakeObject:
    return FakeObject(
        "SESTemplate",
        sestemplate.PLURAL,
        "welcome",
        # html and text both: moto answers a missing part as "" (SES omits it).
        {
            "subject": "Hi {{name}}",
            "html": "<p>Hello {{name}}</p>",
            "text": "Hello {{name}}",
            **spec,
        },
    )


def ses_template(settings: OperatorSettings, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = aws_clients.client("ses", settings).get_template(TemplateName=name)[
            "Template"
        ]
    except ClientError:
        return None
    return found


# -- SESTemplate --------------------------------------------------------------------------
def test_a_template_is_created_once_updated_on_change_and_deleted(
    settings: OperatorSettings,
) -> None:
    obj = template()
    assert (
        sestemplate.reconcile(obj, settings)
        == f"SES template {settings.aws_name_prefix}welcome is in sync"
    )
    assert (
        obj.status["templateName"] == f"{settings.aws_name_prefix}welcome"
    )  # claimed before the create
    assert (
        ses_template(settings, f"{settings.aws_name_prefix}welcome")["SubjectPart"] == "Hi {{name}}"
    )  # type: ignore[index]
    sestemplate.reconcile(obj, settings)
    assert obj.reasons == ["Created"]  # nothing to do the second time

    obj.raw["spec"]["subject"] = "Welcome {{name}}"
    sestemplate.reconcile(obj, settings)
    assert obj.reasons == ["Created", "Updated"]
    assert (
        ses_template(settings, f"{settings.aws_name_prefix}welcome")["SubjectPart"]
        == "Welcome {{name}}"
    )  # type: ignore[index]

    sestemplate.delete(obj, settings)
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome") is None


def test_a_bad_placeholder_is_refused_before_any_aws_call(settings: OperatorSettings) -> None:
    obj = template(text="Hello {{#if name}} no end")
    with pytest.raises(InvalidSpec, match="never closed"):
        sestemplate.reconcile(obj, settings)
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome") is None
    assert obj.status == {}


def test_a_name_held_by_another_resource_is_refused_before_any_aws_call(
    settings: OperatorSettings, name_claims: dict[str, str]
) -> None:
    first, second = template(templateName="shared"), template(templateName="shared")
    second.raw["metadata"] |= {"namespace": "other", "uid": "uid-other"}
    sestemplate.reconcile(first, settings)
    second.raw["spec"] |= {"subject": "Mine now", "adopt": True}
    with pytest.raises(AdoptionRefused, match="belongs to SESTemplate tenants/welcome"):
        sestemplate.reconcile(second, settings)
    sestemplate.delete(second, settings)
    assert ses_template(settings, "shared")["SubjectPart"] == "Hi {{name}}"  # type: ignore[index]
    assert name_claims == {f"{settings.aws_region}/shared": "tenants/welcome"}
    sestemplate.delete(first, settings)
    assert name_claims == {} and ses_template(settings, "shared") is None


def test_someone_elses_template_is_not_taken_without_adopt(settings: OperatorSettings) -> None:
    aws_clients.client("ses", settings).create_template(
        Template={
            "TemplateName": f"{settings.aws_name_prefix}welcome",
            "SubjectPart": "theirs",
            "TextPart": "x",
        }
    )
    with pytest.raises(AlreadyExists, match="adopt"):
        sestemplate.reconcile(template(), settings)
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome")["SubjectPart"] == "theirs"  # type: ignore[index]


def test_drift_is_repaired_only_once_in_sync(settings: OperatorSettings) -> None:
    obj = template()
    sestemplate.reconcile(obj, settings)
    aws_clients.client("ses", settings).delete_template(
        TemplateName=f"{settings.aws_name_prefix}welcome"
    )
    sestemplate.repair_drift(obj, settings)  # not Ready yet: the reconcile's business
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome") is None
    # Through the error contract, as the handler runs it: Ready, observedGeneration.
    common.reconcile(obj, 0, settings, lambda: sestemplate.reconcile(obj, settings))
    aws_clients.client("ses", settings).delete_template(
        TemplateName=f"{settings.aws_name_prefix}welcome"
    )
    sestemplate.repair_drift(obj, settings)
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome") is not None
    assert obj.events[-1] == ("DriftRepaired", True)


def test_a_retained_template_outlives_its_object(settings: OperatorSettings) -> None:
    obj = template(deletionPolicy="Retain")
    sestemplate.reconcile(obj, settings)
    sestemplate.delete(obj, settings)
    assert ses_template(settings, f"{settings.aws_name_prefix}welcome") is not None
    assert obj.reasons[-1] == "Retained"


# -- the error contract ---------------------------------------------------------------------
def test_success_invalid_specs_and_throttling_end_as_the_contract_says(
    settings: OperatorSettings,
) -> None:
    obj = template()
    common.reconcile(obj, 0, settings, lambda: "all good")
    assert obj.condition(cond.READY)["status"] == "True"
    assert obj.condition(cond.SYNCED)["reason"] == cond.RECONCILE_SUCCESS

    def invalid() -> str:
        raise InvalidSpec("spec.subject is empty")

    with pytest.raises(kopf.PermanentError):
        common.reconcile(obj, 0, settings, invalid)
    assert obj.condition(cond.READY) | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "False",
        "reason": cond.INVALID_SPEC,
        "message": "spec.subject is empty",
        "lastTransitionTime": None,
    }

    def throttled() -> str:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "GetTemplate")

    with pytest.raises(kopf.TemporaryError) as caught:
        common.reconcile(obj, 3, settings, throttled)
    assert caught.value.delay == common.backoff(3, settings) == 16
    assert obj.condition(cond.SYNCED)["reason"] == cond.RECOVERABLE
    assert obj.events[-1] == (cond.RECOVERABLE, True)


# -- Tenant steps -----------------------------------------------------------------------------
def acme() -> FakeObject:
    return FakeObject(
        "Tenant",
        tenant.PLURAL,
        "acme",
        {
            "slug": "acme",
            "displayName": "Acme Farms",
            "adminEmail": "admin@acme.example.com",
            "plan": "starter",
        },
    )


def test_the_admin_user_is_made_once_and_never_taken_from_another_tenant(
    settings: OperatorSettings,
) -> None:
    obj = acme()
    tenant.ensure_user(obj, settings)
    tenant.ensure_user(obj, settings)
    assert obj.reasons == ["CognitoUserCreated"]
    assert obj.status["cognitoUsername"] == "admin@acme.example.com"
    assert obj.condition(tenant.USER)["status"] == "True"
    user = aws_clients.client("cognito-idp", settings).admin_get_user(
        UserPoolId=settings.cognito_user_pool_id, Username="admin@acme.example.com"
    )
    assert {"Name": "custom:tenant", "Value": "acme"} in user["UserAttributes"]

    other = acme()
    other.raw["metadata"]["name"] = other.raw["spec"]["slug"] = "other"
    with pytest.raises(AlreadyExists, match="another tenant \\(acme\\)"):
        tenant.ensure_user(other, settings)


def test_the_welcome_email_waits_for_its_template_then_is_queued_once(
    settings: OperatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(kube, "get_object", lambda plural, ns, name: templates.get(name))
    obj = acme()
    with pytest.raises(tenant.Waiting):
        tenant.ensure_welcome_email(obj, settings)
    assert obj.condition(tenant.EMAIL)["reason"] == "TemplateNotReady"

    templates["welcome"] = {
        "status": {
            "templateName": f"{settings.aws_name_prefix}welcome",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    tenant.ensure_welcome_email(obj, settings)
    tenant.ensure_welcome_email(obj, settings)  # queuedAt recorded: not again
    sqs = aws_clients.client("sqs", settings)
    messages = sqs.receive_message(QueueUrl=settings.email_queue_url, MaxNumberOfMessages=10)
    [job] = [json.loads(m["Body"]) for m in messages["Messages"]]
    assert job["idempotencyKey"] == "welcome-uid-acme"
    assert job["template"] == f"{settings.aws_name_prefix}welcome"
    assert job["data"]["loginURL"] == "https://platform.example.com/?realm=acme"
    assert job["report"] == {"namespace": "tenants", "name": "acme", "uid": "uid-acme"}
    assert obj.condition(tenant.EMAIL)["status"] == "True"


@pytest.mark.parametrize("wrong", ["4nosuchclient000000000000a", "admin"])
def test_a_shared_client_that_is_not_herd_tenants_of_the_pool_is_never_used(
    settings: OperatorSettings, aws_side: bootstrap.Environment, wrong: str
) -> None:
    """A wrong HERD_COGNITO_SHARED_CLIENT_ID (a placeholder left in the values, or another
    client of the pool) is refused before any Secret names it or any child is moved off; a
    Tenant that has a child of its own says the child is kept."""
    client_id = aws_side.admin_client_id if wrong == "admin" else wrong
    wrong_settings = settings.model_copy(update={"cognito_shared_client_id": client_id})
    new = acme()
    with pytest.raises(Recoverable, match="is not herd-tenants of pool"):
        tenant.ensure_client(new, wrong_settings)
    step = new.condition(tenant.CLIENT)
    assert (step["status"], step["reason"]) == ("False", "SharedClientMissing")
    assert step["message"].startswith("shared client herd-tenants: app client")
    # One made with a child of its own (as the operator before the shared client made it).
    old = acme()
    old.set_conditions((tenant.CLIENT, True, "Ready", "credentials in Secret acme-cognito"))
    with pytest.raises(Recoverable):
        tenant.ensure_client(old, wrong_settings)
    assert old.condition(tenant.CLIENT)["message"].startswith("CognitoClient acme-app kept: ")
    assert tenant.needs_migration(old.raw, wrong_settings)  # still: it moves once fixed
