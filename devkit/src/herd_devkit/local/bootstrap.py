"""`herd aws bootstrap`: the AWS side one environment needs, created idempotently.

User pool (with the `admins` group, a `custom:tenant` attribute and the app clients
`herd-admin` and `herd-tenants`, the one every Tenant without callback URLs signs in with), a
verified SES sender, the email queue with its dead-letter queue, the email-jobs idempotency
table, the logo buckets with their thumbnail queue (`logos.py`) and, for an environment
(`--env`), a billing alarm and an alarm at 80% of each AWS quota that has a usage metric
(`quota_alarms`). Names carry the environment's prefix, so dev and prod can share one moto.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from herd_core import aws, quotas
from herd_core.constants import ADMIN_CLIENT_READ_ATTRIBUTES, ADMIN_CLIENT_WRITE_ATTRIBUTES
from herd_devkit.local import logos
from herd_devkit.settings import Settings

MAX_RECEIVES = 5  # deliveries before a poison email job lands in the DLQ
# AWS publishes EstimatedCharges only in us-east-1, whatever region the account runs in.
BILLING_REGION = "us-east-1"
BILLING_PERIOD = 21600  # seconds: the metric is updated a few times a day
QUOTA_ALARM_PERCENT = 80.0
USAGE_PERIOD = 60  # seconds: AWS/Usage metrics are collected every minute


@dataclass(frozen=True)
class Environment:
    user_pool_id: str
    email_queue_url: str
    email_dlq_url: str
    email_jobs_table: str
    email_sender: str
    admin_client_id: str
    logo_raw_bucket: str
    logo_bucket: str
    thumbnail_queue_url: str
    thumbnail_dlq_url: str
    billing_alarm: str = ""  # the alarm's name; empty when bootstrapped without a threshold
    # The app client every Tenant without callback URLs signs in with (docs/tenant-model.md).
    shared_client_id: str = ""
    # With an environment: the alarms at QUOTA_ALARM_PERCENT of a quota, and the quotas that
    # can run out but have no usage metric to alarm on (key: what to watch instead).
    quota_alarms: tuple[str, ...] = ()
    quotas_without_usage_metric: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        """As the HERD_* variables the operator, API and worker read."""
        return {
            "HERD_COGNITO_USER_POOL_ID": self.user_pool_id,
            "HERD_EMAIL_QUEUE_URL": self.email_queue_url,
            "HERD_EMAIL_DLQ_URL": self.email_dlq_url,
            "HERD_EMAIL_JOBS_TABLE": self.email_jobs_table,
            "HERD_EMAIL_SENDER": self.email_sender,
            "HERD_ADMIN_CLIENT_ID": self.admin_client_id,
            "HERD_COGNITO_SHARED_CLIENT_ID": self.shared_client_id,
            "HERD_LOGO_RAW_BUCKET": self.logo_raw_bucket,
            "HERD_LOGO_BUCKET": self.logo_bucket,
            "HERD_THUMBNAIL_QUEUE_URL": self.thumbnail_queue_url,
            "HERD_THUMBNAIL_DLQ_URL": self.thumbnail_dlq_url,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap(
    settings: Settings, billing_threshold: float | None = None, quota_alarms: bool = False
) -> Environment:
    """`billing_threshold` (USD, the environment's clusters/<env>/cost.yaml) adds the billing
    alarm; `quota_alarms` the quotas' (`quota_alarms()`)."""
    prefix = settings.aws_name_prefix
    pool = user_pool(settings, f"{prefix}herd-platform")
    clients = _clients(settings, pool)
    alarms, unwatched = _quota_alarms(settings, prefix) if quota_alarms else ((), ())
    return Environment(
        quota_alarms=alarms,
        quotas_without_usage_metric=unwatched,
        user_pool_id=pool,
        admin_client_id=_app_client(settings, pool, clients, ADMIN_CLIENT),
        shared_client_id=_app_client(settings, pool, clients, SHARED_CLIENT),
        **_queues(settings, f"{prefix}herd-emails"),
        email_jobs_table=_table(settings, f"{prefix}{settings.email_jobs_table}"),
        email_sender=_sender(settings),
        **logos.buckets(settings, prefix),
        billing_alarm=(
            _billing_alarm(settings, f"{prefix}herd-billing", billing_threshold)
            if billing_threshold is not None
            else ""
        ),
    )


def user_pool(settings: Settings, name: str) -> str:
    """The user pool of that name, made as the platform's is (email as the username)."""
    idp = aws.client("cognito-idp", settings)
    pools = idp.list_user_pools(MaxResults=60)["UserPools"]
    pool_id = next((p["Id"] for p in pools if p["Name"] == name), None)
    if pool_id is None:
        pool_id = idp.create_user_pool(
            PoolName=name,
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
            Schema=[{"Name": "tenant", "AttributeDataType": "String", "Mutable": True}],
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        )["UserPool"]["Id"]
    try:
        idp.create_group(
            UserPoolId=pool_id, GroupName="admins", Description="Herd platform administrators"
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "GroupExistsException":
            raise
    return str(pool_id)


# The admin page's sign-in: no secret, password auth via the API.
ADMIN_CLIENT: dict[str, Any] = {
    "ClientName": "herd-admin",
    "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    "ReadAttributes": list(ADMIN_CLIENT_READ_ATTRIBUTES),
    "WriteAttributes": list(ADMIN_CLIENT_WRITE_ATTRIBUTES),
}
# The one client of every Tenant without callback URLs (a pool holds 1,000 clients by
# default, 10,000 at most: one per Tenant would cap the tenant count). Public (SPA, SRP) as
# a Tenant's own client is; the same named attribute permissions as herd-admin, so no user
# can write custom:tenant on themselves through it. Whose tenant a user is comes from the
# Tenant (status.adminSub), never from the client.
SHARED_CLIENT_NAME = "herd-tenants"
SHARED_CLIENT: dict[str, Any] = {
    "ClientName": SHARED_CLIENT_NAME,
    "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    "ReadAttributes": list(ADMIN_CLIENT_READ_ATTRIBUTES),
    "WriteAttributes": list(ADMIN_CLIENT_WRITE_ATTRIBUTES),
}


def _clients(settings: Settings, pool_id: str) -> list[dict[str, Any]]:
    """Every client of the pool (every page: it may still hold one client per Tenant)."""
    pages = (
        aws.client("cognito-idp", settings)
        .get_paginator("list_user_pool_clients")
        .paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60})
    )
    return [c for page in pages for c in page["UserPoolClients"]]


def _app_client(
    settings: Settings, pool_id: str, clients: list[dict[str, Any]], want: dict[str, Any]
) -> str:
    """The app client `want` describes, made or put right. Its attribute permissions are
    named (never AWS's default, which lets users write custom:tenant on themselves) and put
    right on a client made before they were."""
    idp = aws.client("cognito-idp", settings)
    found = next((c["ClientId"] for c in clients if c["ClientName"] == want["ClientName"]), None)
    if found is None:
        return str(
            idp.create_user_pool_client(UserPoolId=pool_id, GenerateSecret=False, **want)[
                "UserPoolClient"
            ]["ClientId"]
        )
    have = idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=found)["UserPoolClient"]
    if any(sorted(have.get(k) or []) != sorted(want[k]) for k in want if k != "ClientName"):
        # UpdateUserPoolClient resets what it is not given: `want` is the whole client.
        idp.update_user_pool_client(UserPoolId=pool_id, ClientId=found, **want)
    return str(found)


def _admin_client(settings: Settings, pool_id: str) -> str:
    return _app_client(settings, pool_id, _clients(settings, pool_id), ADMIN_CLIENT)


def _queues(settings: Settings, name: str) -> dict[str, str]:
    sqs = aws.client("sqs", settings)
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
            ),
        },
    )["QueueUrl"]
    return {"email_queue_url": str(queue_url), "email_dlq_url": str(dlq_url)}


def _table(settings: Settings, name: str) -> str:
    ddb = aws.client("dynamodb", settings)
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise
    return name


def _sender(settings: Settings) -> str:
    aws.client("ses", settings).verify_email_identity(EmailAddress=settings.email_sender)
    return settings.email_sender


def _billing_alarm(settings: Settings, name: str, threshold: float) -> str:
    """An alarm on the account's month-to-date EstimatedCharges, notifying an SNS topic of the
    same name (subscribe to it: docs/eks.md). PutMetricAlarm replaces an alarm of that name,
    so a changed threshold is applied on the next run. The account must have "Receive
    Billing Alerts" turned on, or the metric never appears and the alarm stays in
    INSUFFICIENT_DATA (treated as not breaching)."""
    topic = aws.client("sns", settings, region=BILLING_REGION).create_topic(Name=name)["TopicArn"]
    aws.client("cloudwatch", settings, region=BILLING_REGION).put_metric_alarm(
        AlarmName=name,
        AlarmDescription=f"Month-to-date AWS charges above {threshold:,.0f} USD",
        Namespace="AWS/Billing",
        MetricName="EstimatedCharges",
        Dimensions=[{"Name": "Currency", "Value": "USD"}],
        Statistic="Maximum",
        Period=BILLING_PERIOD,
        EvaluationPeriods=1,
        Threshold=float(threshold),
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
    )
    return name


def quota_alarm_name(prefix: str, quota: quotas.Quota) -> str:
    return f"{prefix}herd-quota-{quota.key}"


def _quota_alarms(
    settings: Settings, prefix: str
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """An alarm at QUOTA_ALARM_PERCENT of each quota that can run out and has a usage
    metric (quotas.can_run_out), notifying the SNS topic `<prefix>herd-quotas`: the share
    used is metric math over the usage metric and SERVICE_QUOTA(m1), the quota's applied
    value (a raised quota needs no change here). PutMetricAlarm replaces an alarm of that
    name, so a rerun is idempotent. The quotas without a usage metric are returned with what
    watches them instead."""
    topic = aws.client("sns", settings).create_topic(Name=f"{prefix}herd-quotas")["TopicArn"]
    cloudwatch = aws.client("cloudwatch", settings)
    made: list[str] = []
    unwatched: list[tuple[str, str]] = []
    for quota in quotas.can_run_out():
        if quota.usage is None:
            unwatched.append((quota.key, _watch_instead(quota)))
            continue
        metric, dimensions = quota.usage
        name = quota_alarm_name(prefix, quota)
        # A rate quota is per second, its usage metric a count per minute: the share is the
        # per-second average over the minute.
        per = f"/{USAGE_PERIOD}" if quota.kind == "rate" else ""
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=(
                f"{quota.name} ({quota.scope}) at {QUOTA_ALARM_PERCENT:.0f}% of its quota; "
                f"{quota.raise_how}"
            ),
            Metrics=[
                {
                    "Id": "m1",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": quotas.USAGE_NAMESPACE,
                            "MetricName": metric,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions],
                        },
                        "Period": USAGE_PERIOD,
                        "Stat": "Sum",
                    },
                    "ReturnData": False,
                },
                {
                    "Id": "e1",
                    "Expression": f"(m1{per})/SERVICE_QUOTA(m1)*100",
                    "Label": f"% of {quota.name}",
                    "ReturnData": True,
                },
            ],
            EvaluationPeriods=1,
            Threshold=QUOTA_ALARM_PERCENT,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching",  # no calls in a minute: none used
            AlarmActions=[topic],
        )
        made.append(name)
    return tuple(made), tuple(unwatched)


def _watch_instead(quota: quotas.Quota) -> str:
    """What shows a quota's headroom where CloudWatch has no usage metric for it."""
    if quota.key in ("cognito.app_clients_per_user_pool", "ses.templates_per_region"):
        return "no usage metric: the operator's herd_aws_quota_used / herd_aws_quota_limit"
    return "no usage metric: herd aws quotas --env ENV (exit 1 at 80%)"
