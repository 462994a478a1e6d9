"""Request and response schemas (Base / Create / Public, as the template splits them)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from herd_core.constants import EMAIL_MAX_LENGTH, SLUG_PATTERN
from herd_core.models.tenant import DisplayName, Plan, Slug

SLUG = re.compile(SLUG_PATTERN)


class SignupBase(BaseModel):
    """What a signup asks for: the Tenant's rules (herd_core.models.tenant), the very ones
    its CRD enforces, with a stricter email check."""

    model_config = ConfigDict(str_strip_whitespace=True)

    displayName: DisplayName = Field(examples=["Acme Farms"])
    slug: Slug = Field(examples=["acme"])
    adminEmail: EmailStr = Field(max_length=EMAIL_MAX_LENGTH, examples=["admin@acme.example.com"])
    plan: Plan


class SignupCreate(SignupBase):
    pass


class SignupAccepted(BaseModel):
    slug: str
    status: str = Field(description="URL of the signup's status")
    verifyEmail: bool | None = Field(
        None,
        description="True (to every signup alike) while email verification is on: nothing is "
        "made until the link in the email sent to adminEmail is followed",
    )


class SignupVerify(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="The verification link's token")


class PublicCondition(BaseModel):
    """What anyone may see of a condition: never its message, which can carry AWS or
    OpenRemote error text, names of other tenants or internal URLs."""

    type: str
    status: str
    reason: str | None = None


class SignupStatus(BaseModel):
    slug: str
    phase: str
    conditions: list[PublicCondition]


Phase = Literal["Pending", "Provisioning", "Ready", "Failed", "Deleting"]
PHASES: tuple[str, ...] = ("Pending", "Provisioning", "Ready", "Failed", "Deleting")
WelcomeEmail = Literal["sent", "queued", "not queued"]


class Logo(BaseModel):
    url64: str
    url256: str
    updatedAt: str | None = None


class TenantPublic(BaseModel):
    slug: str
    displayName: str
    adminEmail: str
    plan: str
    phase: str
    createdAt: str
    loginURL: str | None = None
    welcomeEmail: WelcomeEmail = Field(
        "not queued", description="Where the welcome email stands (the worker's report)"
    )
    welcomeEmailSentAt: str | None = None
    logo: Logo | None = None


class Condition(BaseModel):
    """A condition as an admin sees it: with its message."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None


class TenantEvent(BaseModel):
    type: str
    reason: str
    message: str
    count: int = 1
    lastSeen: str | None = None


class TenantDetail(TenantPublic):
    realm: str | None = None
    conditions: list[Condition]
    events: list[TenantEvent] = Field(description="Recent Events about the Tenant, newest first")


class TenantList(BaseModel):
    items: list[TenantPublic]
    continue_: str | None = Field(
        None, alias="continue", description="Pass as ?continue= for the next page"
    )

    model_config = ConfigDict(populate_by_name=True)


LogoContentType = Literal["image/png", "image/jpeg", "image/webp"]


class LogoUploadCreate(BaseModel):
    contentType: LogoContentType = Field(description="PNG, JPEG or WebP (no SVG: scripts)")


class LogoUpload(BaseModel):
    url: str = Field(description="Where to POST the form")
    fields: dict[str, str] = Field(description="Form fields to send before the file")
    key: str
    expiresAt: str
    maxBytes: int
    contentType: str


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256, repr=False)


class Token(BaseModel):
    idToken: str
    accessToken: str
    expiresIn: int


def _fields(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    email = status.get("welcomeEmail") or {}
    logo = status.get("logo") or {}
    return {
        "slug": spec.get("slug", obj["metadata"]["name"]),
        "displayName": spec.get("displayName", ""),
        "adminEmail": spec.get("adminEmail", ""),
        "plan": spec.get("plan", ""),
        "phase": status.get("phase") or "Pending",
        "createdAt": obj["metadata"]["creationTimestamp"],
        "loginURL": status.get("loginURL"),
        "welcomeEmail": "sent" if email.get("sentAt") else "queued" if email else "not queued",
        "welcomeEmailSentAt": email.get("sentAt"),
        "logo": (
            Logo(url64=logo["url64"], url256=logo["url256"], updatedAt=logo.get("updatedAt"))
            if logo.get("url64") and logo.get("url256")
            else None
        ),
    }


def tenant_public(obj: dict[str, Any]) -> TenantPublic:
    return TenantPublic(**_fields(obj))


def tenant_detail(obj: dict[str, Any], events: list[dict[str, Any]]) -> TenantDetail:
    status = obj.get("status") or {}
    return TenantDetail(
        **_fields(obj),
        realm=status.get("realm"),
        conditions=[
            Condition(
                type=c.get("type", ""),
                status=c.get("status", ""),
                reason=c.get("reason"),
                message=c.get("message"),
                lastTransitionTime=c.get("lastTransitionTime"),
            )
            for c in status.get("conditions") or []
        ],
        events=[TenantEvent(**e) for e in events],
    )
