"""Tenant: a customer signup. Its slug rules are shared with the API's signup form."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from herd_core.constants import (
    EMAIL_MAX_LENGTH,
    RESERVED_SLUGS,
    SLUG_MAX_LENGTH,
    SLUG_MIN_LENGTH,
    SLUG_PATTERN,
)
from herd_core.models.base import (
    CRD,
    CallbackURL,
    Column,
    Conditions,
    DeletionPolicy,
    Generation,
    ObjectName,
    Resource,
    Spec,
    Status,
    Timestamp,
    cel,
    immutable,
    k8s,
)

_SLUG = re.compile(SLUG_PATTERN)
RESERVED_SLUG_RULE = cel(
    f"!(self in [{', '.join(f'{s!r}' for s in sorted(RESERVED_SLUGS))}])",
    message_expression="self + ' is a reserved slug'",
)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            "lowercase letters, digits and '-', starting and ending with a letter or digit"
        )
    if value in RESERVED_SLUGS:
        raise ValueError(f"'{value}' is reserved")
    return value


# The pattern goes into the schema (the CRD's); check_slug checks it with a readable message.
Slug = Annotated[
    str,
    Field(
        min_length=SLUG_MIN_LENGTH,
        max_length=SLUG_MAX_LENGTH,
        json_schema_extra={"pattern": SLUG_PATTERN},
    ),
    AfterValidator(check_slug),
]
DisplayName = Annotated[str, Field(min_length=1, max_length=100)]
Plan = Literal["starter", "standard", "enterprise"]


class TenantSpec(Spec):
    displayName: DisplayName
    slug: Slug = Field(
        description="DNS-safe tenant id; names the realm and the Kubernetes objects. Immutable.",
        json_schema_extra=k8s(immutable("slug"), RESERVED_SLUG_RULE),
    )
    adminEmail: str = Field(
        description="The tenant admin's email (Cognito username). Immutable.",
        max_length=EMAIL_MAX_LENGTH,
        pattern=EMAIL_PATTERN,
        json_schema_extra=k8s(immutable("adminEmail")),
    )
    plan: Plan
    welcomeTemplate: ObjectName | None = Field(
        None,
        description=(
            "SESTemplate (same namespace) of the welcome email; default from the operator's "
            "settings."
        ),
    )
    callbackURLs: list[CallbackURL] | None = Field(
        None,
        description=(
            "OAuth callback URLs: given, the tenant gets an app client of its own; else it "
            "signs in with the environment's shared one."
        ),
        max_length=100,
    )
    deletionPolicy: DeletionPolicy = "Delete"


class WelcomeEmail(Status):
    queuedAt: Timestamp | None = None
    sentAt: Timestamp | None = None
    messageId: str | None = None
    resendOf: str | None = Field(
        None,
        description=(
            "The resend.herd-itt.com/welcome-email annotation value the email was last "
            "queued again for (after SES refused it in its sandbox): one resend per value."
        ),
        max_length=253,
    )


class Logo(Status):
    """Thumbnails of the tenant's logo (the thumbnail worker's, field manager herd-thumbnails)."""

    url64: str | None = Field(None, max_length=2048)
    url256: str | None = Field(None, max_length=2048)
    updatedAt: Timestamp | None = None
    sourceVersion: str | None = Field(None, max_length=1024)


class TenantStatus(Status):
    phase: Literal["Pending", "Provisioning", "Ready", "Failed", "Deleting"] | None = None
    observedGeneration: Generation | None = None
    cognitoUsername: str | None = None
    adminSub: str | None = Field(
        None,
        description=(
            "The Cognito sub of the admin user the operator made for this tenant: the one "
            "user the API lets act as this tenant's admin (never a token's custom:tenant, "
            "which users may be able to write)."
        ),
    )
    clientSecretName: str | None = None
    clientId: str | None = Field(
        None,
        description=(
            "The app client the tenant signs in with: the environment's shared one, or its "
            "own CognitoClient's when spec.callbackURLs asks for one."
        ),
    )
    realm: str | None = None
    realmAdminId: str | None = None
    loginURL: str | None = None
    welcomeEmail: WelcomeEmail | None = None
    logo: Logo | None = None
    realmLogoURL: str | None = Field(
        None, description="The logo URL the OpenRemote realm was last given (the operator's)."
    )
    conditions: Conditions = None


class Tenant(Resource):
    """A customer signup: Cognito identity, app client, OpenRemote realm, welcome email."""

    crd = CRD(
        plural="tenants",
        short_names=("tn",),
        columns=(
            Column("Phase", ".status.phase"),
            Column("Slug", ".spec.slug"),
            Column("Plan", ".spec.plan"),
            Column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            Column("Email Sent", ".status.welcomeEmail.sentAt", priority=1),
            Column("Login", ".status.loginURL", priority=1),
            Column("Age", ".metadata.creationTimestamp", type="date"),
        ),
        # `?phase=` of the admin list: filtered by the API server, so a page of a filtered list
        # is as cheap as any page (an absent phase selects as "").
        selectable_fields=(".status.phase",),
    )
    model_config = ConfigDict(
        json_schema_extra=k8s(
            cel("self.metadata.name == self.spec.slug", "metadata.name must equal spec.slug")
        )
    )

    spec: TenantSpec
    status: TenantStatus | None = None

    @model_validator(mode="after")
    def _named_for_its_slug(self) -> Tenant:
        if self.metadata.get("name", self.spec.slug) != self.spec.slug:
            raise ValueError("metadata.name must equal spec.slug")
        return self
