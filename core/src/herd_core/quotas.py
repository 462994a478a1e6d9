"""Every AWS quota and request rate Herd depends on: AWS's figures, how AWS answers when one
is reached, and where AWS says so. One table for all of Herd: the local AWS enforces it
(herd_devkit.local.aws_quotas), the boto3 client factory paces calls by it (herd_core.aws),
the error contract names it (herd_core.errors), `herd aws quotas` and the operator's gauges
report headroom against it.

Figures as published on AS_OF, read from AWS's pages named in each row. AWS changes them:
re-read the pages and change the row and AS_OF together. Where AWS publishes a figure but
not the exact text of its error, the message is the API reference's description of the
error, and the row says so.

An account's own figures (a quota raised through Service Quotas, or lowered locally to test
the limit without 1,000 calls) are given by HERD_AWS_QUOTAS (Settings.aws_quotas), keyed as
here: `{"cognito.app_clients_per_user_pool": 3}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

AS_OF = "2026-12-05"

COGNITO_QUOTAS = "https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html"
COGNITO_API = "https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference"
SES_QUOTAS = "https://docs.aws.amazon.com/ses/latest/dg/quotas.html"
SES_SENDING_ERRORS = "https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html"
SES_API = "https://docs.aws.amazon.com/ses/latest/APIReference"
SQS_QUOTAS = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html"
)
CLOUDWATCH_QUOTAS = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html"
)
SERVICE_QUOTAS = "https://console.aws.amazon.com/servicequotas/home/services/{service}/quotas"
SES_PRODUCTION_ACCESS = "https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html"
# CloudWatch's usage metrics: a quota with one can have an alarm on its share used
# (SERVICE_QUOTA(m1) is the quota's applied value). Cognito publishes CallCount per API
# category (not per user pool, and nothing for its resource counts); SES and SQS publish
# none for the quotas here.
USAGE_NAMESPACE = "AWS/Usage"
USAGE_ALARMS = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/"
    "CloudWatch-Quotas-Visualize-Alarms.html"
)
COGNITO_USAGE = f"{COGNITO_QUOTAS}#track-quota-usage"

# Cognito's answers (JSON protocol, HTTP 400). The API reference documents the codes with
# these descriptions; "Rate exceeded" is the message Cognito's throttling carries.
COGNITO_LIMIT = (
    "LimitExceededException",
    "This exception is thrown when a user exceeds the limit for a requested Amazon Web "
    "Services resource.",
)
COGNITO_THROTTLED = ("TooManyRequestsException", "Rate exceeded")
# SES v1 (query protocol, XML errors, HTTP 400).
SES_LIMIT = (
    "LimitExceeded",
    "Indicates that a resource could not be created because of service limits.",
)
SES_THROTTLED = ("Throttling", "Rate exceeded")
# SES v2 (REST-JSON): its throttling error as the API reference names it.
SESV2_THROTTLED = ("TooManyRequestsException", "Too many requests have been made to the operation.")
# CloudWatch (JSON, query-compatible: the query API's code).
CLOUDWATCH_THROTTLED = ("Throttling", "Rate exceeded")
SES_DAILY = ("Throttling", "Daily message quota exceeded.")
SES_RATE = ("Throttling", "Maximum sending rate exceeded.")
SES_SANDBOX = (
    "MessageRejected",
    "Email address is not verified. The following identities failed the check in region "
    "{region}: {identities}",
)
# SES v1 calls that are not throttled at one a second (they are by the sending rate).
SES_SENDS = frozenset({"SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail"})

Kind = Literal["count", "rate", "daily"]


@dataclass(frozen=True)
class Quota:
    key: str  # how Herd names it (HERD_AWS_QUOTAS, metrics, conditions)
    service: str  # boto3's service name
    name: str  # as AWS's quota page names it
    kind: Kind  # count: resources that exist; rate: calls a second; daily: rolling 24 h
    default: float
    maximum: float | None  # the most AWS grants on request; None: not published
    adjustable: bool
    scope: str  # what one quota counts over
    error: tuple[str, str]  # (code, message) AWS answers when it is reached
    source: str
    # count: the calls that make one more; rate: the calls that share it.
    operations: tuple[str, ...] = ()
    # Cognito's categories whose every operation is also held to this many calls a second
    # against one user pool (footnote 3 of the categories table).
    per_pool: float | None = None
    enforced: bool = True  # False: listed for the record, not held by the local AWS
    # rate: each of `operations` has the whole rate to itself (SES's "once per second").
    per_operation: bool = False
    note: str = ""
    # CloudWatch's usage metric of it (namespace USAGE_NAMESPACE): its name and dimensions;
    # None where AWS publishes none.
    usage: tuple[str, tuple[tuple[str, str], ...]] | None = None

    @property
    def raise_how(self) -> str:
        if not self.adjustable:
            return "AWS does not raise it"
        if self.service == "ses" and self.kind != "count":
            return f"request production access or a higher quota ({SES_PRODUCTION_ACCESS})"
        return (
            f"request an increase in Service Quotas ({SERVICE_QUOTAS.format(service=self.service)})"
        )


def _cognito_category(
    category: str, rps: float, adjustable: bool, operations: tuple[str, ...], per_pool: bool
) -> Quota:
    return Quota(
        key=f"cognito.rate.{category}",
        service="cognito-idp",
        name=f"{category} API request rate",
        kind="rate",
        default=rps,
        maximum=None,
        adjustable=adjustable,
        scope="account and Region, all user pools",
        error=COGNITO_THROTTLED,
        source=f"{COGNITO_QUOTAS}#category_operations",
        operations=operations,
        per_pool=5.0 if per_pool else None,
        # The account's calls of the category (Cognito's usage metrics: CallCount by
        # category, the Class dimension unused), the per-pool figure not covered.
        usage=(
            "CallCount",
            (("Service", "Cognito User Pools"), ("Type", "API"), ("Resource", category)),
        ),
    )


_TABLE: tuple[Quota, ...] = (
    # -- Cognito user pools: resources ------------------------------------------------------
    Quota(
        key="cognito.app_clients_per_user_pool",
        service="cognito-idp",
        name="App clients per user pool",
        kind="count",
        default=1_000,
        maximum=10_000,
        adjustable=True,
        scope="user pool",
        error=COGNITO_LIMIT,
        source=f"{COGNITO_QUOTAS}#resource-quotas-cup",
        operations=("CreateUserPoolClient",),
        note="Herd makes one per Tenant in the platform pool, plus herd-admin: the ceiling "
        "of Tenants per pool",
    ),
    Quota(
        key="cognito.user_pools_per_region",
        service="cognito-idp",
        name="User pools per Region",
        kind="count",
        default=1_000,
        maximum=10_000,
        adjustable=True,
        scope="account and Region",
        error=COGNITO_LIMIT,
        source=f"{COGNITO_QUOTAS}#resource-quotas-cup",
        operations=("CreateUserPool",),
        note="Herd uses one per environment",
    ),
    Quota(
        key="cognito.users_per_user_pool",
        service="cognito-idp",
        name="Users per user pool",
        kind="count",
        default=40_000_000,
        maximum=None,
        adjustable=True,
        scope="user pool",
        error=COGNITO_LIMIT,
        source=f"{COGNITO_QUOTAS}#resource-quotas-cup",
        enforced=False,
        note="one admin per Tenant; AdminCreateUser models no LimitExceededException, so "
        "how AWS answers is not published",
    ),
    # -- Cognito user pools: request rates, by category (the categories Herd's calls fall in)
    _cognito_category(
        "UserAuthentication",
        120,
        True,
        ("InitiateAuth", "AdminInitiateAuth", "GetTokensFromRefreshToken"),
        False,
    ),
    _cognito_category(
        "UserCreation",
        50,
        True,
        ("SignUp", "ConfirmSignUp", "AdminCreateUser", "AdminConfirmSignUp"),
        False,
    ),
    _cognito_category(
        "UserAccountRecovery",
        30,
        False,
        (
            "ChangePassword",
            "ConfirmForgotPassword",
            "ForgotPassword",
            "AdminResetUserPassword",
            "AdminSetUserPassword",
        ),
        False,
    ),
    _cognito_category(
        "UserRead", 120, True, ("AdminGetUser", "AdminGetUserAuthFactors", "GetUser"), False
    ),
    _cognito_category(
        "UserUpdate",
        25,
        False,
        (
            "AdminAddUserToGroup",
            "AdminDeleteUserAttributes",
            "AdminUpdateUserAttributes",
            "AdminDeleteUser",
            "AdminDisableUser",
            "AdminEnableUser",
            "AdminLinkProviderForUser",
            "AdminDisableProviderForUser",
            "VerifyUserAttribute",
            "DeleteUser",
            "DeleteUserAttributes",
            "UpdateUserAttributes",
            "AdminUserGlobalSignOut",
            "GlobalSignOut",
            "AdminRemoveUserFromGroup",
        ),
        False,
    ),
    _cognito_category("UserList", 30, False, ("ListUsers", "ListUsersInGroup"), False),
    _cognito_category("UserPoolRead", 15, False, ("DescribeUserPool", "ListUserPools"), False),
    _cognito_category(
        "UserPoolUpdate", 15, False, ("CreateUserPool", "UpdateUserPool", "DeleteUserPool"), False
    ),
    _cognito_category(
        "UserPoolResourceRead",
        20,
        False,
        ("GetGroup", "ListGroups", "DescribeResourceServer", "ListResourceServers"),
        True,
    ),
    _cognito_category(
        "UserPoolResourceUpdate",
        15,
        False,
        ("CreateGroup", "UpdateGroup", "DeleteGroup", "AddCustomAttributes"),
        True,
    ),
    _cognito_category(
        "UserPoolClientRead", 15, False, ("DescribeUserPoolClient", "ListUserPoolClients"), True
    ),
    _cognito_category(
        "UserPoolClientUpdate",
        15,
        False,
        ("CreateUserPoolClient", "DeleteUserPoolClient", "UpdateUserPoolClient"),
        True,
    ),
    # -- SES (v1 API) -----------------------------------------------------------------------
    Quota(
        key="ses.sending_quota",
        service="ses",
        name="Number of emails that can be sent per 24-hour period",
        kind="daily",
        default=200,
        maximum=None,
        adjustable=True,
        scope="account and Region, recipients over a rolling 24 h",
        error=SES_DAILY,
        source=f"{SES_QUOTAS} ; {SES_SENDING_ERRORS}",
        operations=tuple(sorted(SES_SENDS)),
        note="200 in the sandbox; out of it AWS sets it per account (GetSendQuota)",
    ),
    Quota(
        key="ses.sending_rate",
        service="ses",
        name="Number of emails that can be sent per second (sending rate)",
        kind="rate",
        default=1,
        maximum=None,
        adjustable=True,
        scope="account and Region, recipients",
        error=SES_RATE,
        source=f"{SES_QUOTAS} ; {SES_SENDING_ERRORS}",
        operations=tuple(sorted(SES_SENDS)),
        note="1 in the sandbox; out of it AWS sets it per account (GetSendQuota). The "
        "worker paces its sends by GetSendQuota's MaxSendRate",
    ),
    Quota(
        key="ses.api_rate",
        service="ses",
        name="All actions except sending: requests per second",
        kind="rate",
        default=1,
        maximum=None,
        adjustable=False,
        scope="operation, account and Region",
        error=SES_THROTTLED,
        source=f"{SES_QUOTAS}#quotas-api ; {SES_API}/API_CreateTemplate.html",
        operations=(
            "CreateTemplate",
            "UpdateTemplate",
            "DeleteTemplate",
            "GetTemplate",
            "ListTemplates",
            "TestRenderTemplate",
            "GetSendQuota",
            "VerifyEmailIdentity",
            "ListIdentities",
            "GetIdentityVerificationAttributes",
        ),
        per_operation=True,
        note='"You can execute this operation no more than once per second" (each of them)',
    ),
    Quota(
        key="sesv2.api_rate",
        service="sesv2",
        name="All actions except sending: requests per second (API v2)",
        kind="rate",
        default=1,
        maximum=None,
        adjustable=False,
        scope="operation, account and Region",
        error=SESV2_THROTTLED,
        source=f"{SES_QUOTAS}#quotas-api ; https://docs.aws.amazon.com/ses/latest/APIReference-V2/"
        "API_GetAccount.html",
        operations=("GetAccount",),
        per_operation=True,
        note="the operator's sandbox check (GetAccount's ProductionAccessEnabled)",
    ),
    Quota(
        key="ses.templates_per_region",
        service="ses",
        name="Email templates per AWS Region",
        kind="count",
        default=20_000,
        maximum=None,
        adjustable=False,
        scope="account and Region",
        error=SES_LIMIT,
        source=SES_QUOTAS,
        operations=("CreateTemplate",),
        note="Herd makes one per SESTemplate",
    ),
    Quota(
        key="ses.identities_per_region",
        service="ses",
        name="Maximum number of identities you can verify",
        kind="count",
        default=10_000,
        maximum=None,
        adjustable=True,
        scope="account and Region",
        error=SES_LIMIT,
        source=SES_QUOTAS,
        enforced=False,
        note="Herd verifies its sender; in the sandbox also each test recipient. AWS raises "
        "it through the account manager, not Service Quotas",
    ),
    # -- CloudWatch ---------------------------------------------------------------------------
    Quota(
        key="cloudwatch.put_metric_alarm_rate",
        service="cloudwatch",
        name="PutMetricAlarm requests per second",
        kind="rate",
        default=3,
        maximum=None,
        adjustable=True,
        scope="account and Region",
        error=CLOUDWATCH_THROTTLED,
        source=f"{CLOUDWATCH_QUOTAS} (API requests)",
        operations=("PutMetricAlarm",),
        note="`herd aws bootstrap` puts one alarm per quota it watches, and the billing alarms",
    ),
    # -- SQS ----------------------------------------------------------------------------------
    Quota(
        key="sqs.in_flight_per_queue",
        service="sqs",
        name="Messages per queue (in flight)",
        kind="count",
        default=120_000,
        maximum=None,
        adjustable=True,
        scope="standard queue",
        error=("OverLimit", ""),  # the page names the code, not its text
        source=SQS_QUOTAS,
        enforced=False,
        note="answered only to short polls; Herd's workers long-poll and delete each message "
        "once handled, so they stay far below it",
    ),
)

QUOTAS: dict[str, Quota] = {q.key: q for q in _TABLE}
# The SES sandbox: not a number but a rule. In it SES sends only to verified identities
# (the mailbox simulator aside) and the sending quota and rate are the defaults above.
SANDBOX_SOURCE = f"{SES_QUOTAS} ; {SES_PRODUCTION_ACCESS}"


def counts() -> Iterator[Quota]:
    """The resource quotas (those that can run out), in table order."""
    return (q for q in _TABLE if q.kind == "count")


def can_run_out() -> Iterator[Quota]:
    """The quotas a growing platform uses up (resource counts, the daily sending quota) and
    the request rates a burst of signups does: the ones to alarm on before they are reached."""
    return (q for q in _TABLE if q.kind in ("count", "daily") or q.usage is not None)


def rates_of(service: str, operation: str) -> list[Quota]:
    """The request-rate quotas one call counts against (SES sends aside: per recipient)."""
    return [
        q
        for q in _TABLE
        if q.kind == "rate"
        and q.service == service
        and operation in q.operations
        and operation not in SES_SENDS
    ]


def made_by(service: str, operation: str) -> Quota | None:
    """The resource quota a call consumes one of, if it creates a counted resource."""
    return next((q for q in counts() if q.service == service and operation in q.operations), None)


def limit(key: str, overrides: Mapping[str, float] | None = None) -> float:
    """The quota's value for this account: HERD_AWS_QUOTAS's if given, else AWS's default."""
    if overrides and key in overrides:
        return float(overrides[key])
    return QUOTAS[key].default


def figure(value: float | None) -> str:
    """1,000 / 0.5 / n/a: as the table prints figures."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def reached_message(quota: Quota, used: int | None, limit_: float, where: str = "") -> str:
    """What a QuotaExceeded condition says: the quota, its figures, how to raise it."""
    at = f" {where}" if where else ""
    counted = f"{used} of {figure(limit_)} used" if used is not None else f"limit {figure(limit_)}"
    most = f", at most {figure(quota.maximum)}" if quota.maximum else ""
    return (
        f"AWS quota reached: {quota.name}{at} ({counted}; AWS default {figure(quota.default)}"
        f"{most}); {quota.raise_how}, then set HERD_AWS_QUOTAS "
        f'{{"{quota.key}": <new limit>}}'
    )
