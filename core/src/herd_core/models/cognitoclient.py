"""CognitoClient: a Cognito user-pool app client; its id (and secret) go into a Secret."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from herd_core.models.base import (
    CRD,
    DNS_SUBDOMAIN_PATTERN,
    READY,
    SYNCED,
    CallbackURL,
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

AuthFlow = Literal[
    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ALLOW_CUSTOM_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_AUTH",
]
OAuthFlow = Literal["code", "implicit", "client_credentials"]
# The standard attributes a user may be let write on themselves (an app client's
# WriteAttributes). Never a custom one: custom attributes hold what the platform decides about
# a user (custom:tenant), and a user writes them with nothing but their own access token.
WritableAttribute = Literal[
    "address",
    "birthdate",
    "email",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "phone_number",
    "picture",
    "preferred_username",
    "profile",
    "updated_at",
    "website",
    "zoneinfo",
]
# ReadAttributes may also name the verified flags and custom attributes.
READABLE_PATTERN = (
    r"^(address|birthdate|email|email_verified|family_name|gender|given_name|locale|"
    r"middle_name|name|nickname|phone_number|phone_number_verified|picture|"
    r"preferred_username|profile|updated_at|website|zoneinfo|custom:[\w.-]{1,20})$"
)
ReadableAttribute = Annotated[str, Field(pattern=READABLE_PATTERN)]
Scope = Annotated[str, Field(min_length=1, max_length=256)]
SET = k8s(list_type="set")


class TokenValidity(Spec):
    accessTokenMinutes: int | None = Field(None, ge=5, le=1440)
    idTokenMinutes: int | None = Field(None, ge=5, le=1440)
    refreshTokenDays: int | None = Field(None, ge=1, le=3650)


class CognitoClientSpec(Spec):
    model_config = ConfigDict(
        json_schema_extra=k8s(
            cel(
                "self.generateSecret == oldSelf.generateSecret",
                "spec.generateSecret is immutable (Cognito cannot add or remove a client secret)",
            ),
            cel(
                "(has(self.userPoolId) ? self.userPoolId : '') == "
                "(has(oldSelf.userPoolId) ? oldSelf.userPoolId : '')",
                "spec.userPoolId is immutable",
            ),
            cel(
                "!has(self.allowedOAuthFlows) || size(self.allowedOAuthFlows) == 0 || "
                "(has(self.allowedOAuthScopes) && size(self.allowedOAuthScopes) > 0)",
                "allowedOAuthFlows need allowedOAuthScopes",
            ),
            cel(
                "!has(self.allowedOAuthFlows) || "
                '!(self.allowedOAuthFlows.exists(f, f == "code" || f == "implicit")) || '
                "(has(self.callbackURLs) && size(self.callbackURLs) > 0)",
                "the code and implicit OAuth flows need callbackURLs",
            ),
            cel(
                "!has(self.allowedOAuthFlows) || "
                '!self.allowedOAuthFlows.exists(f, f == "client_credentials") || '
                "self.generateSecret",
                "the client_credentials flow needs generateSecret true",
            ),
        )
    )

    userPoolId: str | None = Field(
        None,
        description="The user pool. Default, the operator's configured pool.",
        pattern=r"^[\w-]+_[0-9a-zA-Z]+$",
    )
    clientName: str = Field(min_length=1, max_length=128, pattern=r"^[\w\s+=,.@-]+$")
    generateSecret: bool = Field(
        False, description="false for browser apps (SPAs), true for confidential clients."
    )
    explicitAuthFlows: list[AuthFlow] | None = Field(None, json_schema_extra=SET)
    allowedOAuthFlows: list[OAuthFlow] | None = Field(None, json_schema_extra=SET)
    allowedOAuthScopes: list[Scope] | None = Field(None, json_schema_extra=SET)
    callbackURLs: list[CallbackURL] | None = Field(None, max_length=100)
    logoutURLs: list[CallbackURL] | None = Field(None, max_length=100)
    tokenValidity: TokenValidity | None = None
    readAttributes: list[ReadableAttribute] | None = Field(
        None,
        description=(
            "User attributes the client may read (GetUser, the ID token). Default: the "
            "standard ones and their verified flags, no custom attribute. Whatever the client "
            "may write it may also read."
        ),
        min_length=1,
        max_length=50,
        json_schema_extra=SET,
    )
    writeAttributes: list[WritableAttribute] | None = Field(
        None,
        description=(
            "Standard user attributes a signed-in user may write on themselves through this "
            "client (UpdateUserAttributes with their access token). Never a custom attribute. "
            "Default: the profile attributes (not email, phone_number or preferred_username). "
            "Always sent to Cognito: a client without WriteAttributes lets users write every "
            "mutable attribute, custom ones included."
        ),
        min_length=1,
        max_length=20,
        json_schema_extra=SET,
    )
    secretName: str = Field(
        description=(
            "Secret (same namespace) that receives clientId, clientSecret, userPoolId and "
            "issuerURL."
        ),
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    deletionPolicy: DeletionPolicy = "Delete"
    adopt: bool = Field(
        False,
        description=(
            "Take over an app client that already exists with this name in the pool. "
            "Never done silently."
        ),
    )

    @model_validator(mode="after")
    def _flows_have_what_they_need(self) -> CognitoClientSpec:
        flows = set(self.allowedOAuthFlows or ())
        if flows and not self.allowedOAuthScopes:
            raise ValueError("allowedOAuthFlows need allowedOAuthScopes")
        if flows & {"code", "implicit"} and not self.callbackURLs:
            raise ValueError("the code and implicit OAuth flows need callbackURLs")
        if "client_credentials" in flows and not self.generateSecret:
            raise ValueError("the client_credentials flow needs generateSecret true")
        return self


class CognitoClientStatus(Status):
    observedGeneration: Generation | None = None
    clientId: str | None = None
    userPoolId: str | None = None
    secretName: str | None = None
    creationStarted: Timestamp | None = None
    # The claim a create is started under (app clients take no tags: this is the marker).
    claimedName: str | None = Field(
        None,
        description=(
            "The clientName a create was started under, with creationStarted: after a crash "
            "only a client of exactly this name is taken as this one's own create."
        ),
    )
    claimedNameFree: bool | None = Field(
        None,
        description=(
            "The pool had no client of claimedName when it was claimed (not set: the pool "
            "was not listed, as for a Tenant's own client; then only a client made since "
            "creationStarted counts)."
        ),
    )
    lastSyncedTime: Timestamp | None = None
    conditions: Conditions = None


class CognitoClient(Resource):
    """A Cognito user-pool app client; its id (and secret) go into a Secret."""

    crd = CRD(
        plural="cognitoclients",
        short_names=("cogc",),
        columns=(
            Column("Ready", f"{READY}.status"),
            Column("Synced", f"{SYNCED}.status"),
            Column("Client ID", ".status.clientId"),
            Column("Secret", ".spec.secretName"),
            Column("Pool", ".status.userPoolId", priority=1),
            Column("Reason", f"{READY}.reason", priority=1),
            Column("Age", ".metadata.creationTimestamp", type="date"),
        ),
    )

    spec: CognitoClientSpec
    status: CognitoClientStatus | None = None
