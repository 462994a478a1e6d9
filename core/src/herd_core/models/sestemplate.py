"""SESTemplate: an SES email template (SES v1 template API; SES shares templates with v2)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from herd_core.models.base import (
    CRD,
    READY,
    SYNCED,
    Column,
    Conditions,
    DeletionPolicy,
    Generation,
    Resource,
    Spec,
    Status,
    Timestamp,
    cel,
    k8s,
)


class SESTemplateSpec(Spec):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            cel(
                "has(self.html) || has(self.text)",
                "at least one of spec.html or spec.text is required",
            ),
            cel(
                "has(self.templateName) == has(oldSelf.templateName) && "
                "(!has(self.templateName) || self.templateName == oldSelf.templateName)",
                "spec.templateName is immutable; create a new SESTemplate instead",
            ),
        )
    )

    templateName: str | None = Field(
        None,
        description="Name in SES. Default, the object's name with the environment's prefix.",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
    )
    subject: str = Field(
        description="Subject line; may hold {{placeholders}}.", min_length=1, max_length=998
    )
    html: str | None = Field(
        None, description="HTML body; may hold {{placeholders}}.", min_length=1, max_length=500000
    )
    text: str | None = Field(
        None,
        description="Plain-text body; may hold {{placeholders}}.",
        min_length=1,
        max_length=500000,
    )
    region: str | None = Field(
        None,
        description="AWS region of the template; default, the operator's region.",
        pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$",
    )
    testData: dict[str, Any] | None = Field(
        None,
        description=(
            "When set, the template is rendered through SES with this data and the result is "
            "reported in status.testRender."
        ),
    )
    deletionPolicy: DeletionPolicy = Field(
        "Delete", description="Delete removes the SES template with this object; Retain keeps it."
    )
    adopt: bool = Field(
        False,
        description=(
            "Take over an SES template that already exists with this name. Never done silently."
        ),
    )

    @model_validator(mode="after")
    def _has_a_body(self) -> SESTemplateSpec:
        if self.html is None and self.text is None:
            raise ValueError("at least one of spec.html or spec.text is required")
        return self


class RenderResult(Status):
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    error: str | None = None
    renderedTime: Timestamp | None = None


class SESTemplateStatus(Status):
    observedGeneration: Generation | None = None
    templateName: str | None = None
    lastSyncedTime: Timestamp | None = None
    testRender: RenderResult | None = None
    conditions: Conditions = None


class SESTemplate(Resource):
    """An SES email template (SES v1 template API; SES shares templates with v2)."""

    crd = CRD(
        plural="sestemplates",
        short_names=("sest",),
        columns=(
            Column("Ready", f"{READY}.status"),
            Column("Synced", f"{SYNCED}.status"),
            Column("Template", ".status.templateName"),
            Column("Reason", f"{READY}.reason", priority=1),
            Column("Age", ".metadata.creationTimestamp", type="date"),
        ),
    )

    spec: SESTemplateSpec
    status: SESTemplateStatus | None = None
