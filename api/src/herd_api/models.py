"""Request and response schemas (Base / Create / Public, as the template splits them)."""

from __future__ import annotations

import re
from typing import Any

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


class TenantPublic(BaseModel):
    slug: str
    displayName: str
    adminEmail: str
    plan: str
    phase: str
    createdAt: str
    loginURL: str | None = None


class TenantList(BaseModel):
    items: list[TenantPublic]
    continue_: str | None = Field(
        None, alias="continue", description="Pass as ?continue= for the next page"
    )

    model_config = ConfigDict(populate_by_name=True)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256, repr=False)


class Token(BaseModel):
    idToken: str
    accessToken: str
    expiresIn: int


def tenant_public(obj: dict[str, Any]) -> TenantPublic:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return TenantPublic(
        slug=spec.get("slug", obj["metadata"]["name"]),
        displayName=spec.get("displayName", ""),
        adminEmail=spec.get("adminEmail", ""),
        plan=spec.get("plan", ""),
        phase=status.get("phase") or "Pending",
        createdAt=obj["metadata"]["creationTimestamp"],
        loginURL=status.get("loginURL"),
    )
