"""Least privilege, checked against what the code really does. Runs last (zz): every AWS
call the suite's operator, API and worker processes made was recorded through botocore
hooks (HERD_AWS_CALL_LOG); each must be allowed by its ServiceAccount's policy, and each
policy must allow nothing the code never calls."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from typing import Any

import pytest

from herd_devkit.local import bootstrap

from .conftest import AWS_CALLS
from .helpers import ROOT

POLICIES = {
    "operator": "herd-operator",
    "worker": "herd-workers",
    "thumbnails": "herd-workers",  # the thumbnail worker runs under the workers' account
    "api": "herd-api",
}
ACCOUNT, REGION = "123456789012", "eu-west-1"  # moto's default account
PREFIX = {
    "ses": "ses",
    "cognito-idp": "cognito-idp",
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "s3": "s3",
}

# The IAM action a call is authorized by, where it is not the call's own name: SQS's batch
# calls need the permission of their single call (the SQS API reference, "Permissions").
IAM_ACTION = {
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
}


def iam_action(call: dict[str, Any]) -> str:
    service, operation = call["service"], call["operation"]
    return IAM_ACTION.get((service, operation), f"{PREFIX[service]}:{operation}")


def policy(role: str, values: dict[str, str]) -> list[dict[str, Any]]:
    text = (ROOT / "charts" / POLICIES[role] / "iam-policy.json").read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text, f"unfilled placeholder in {role}'s policy"
    return list(json.loads(text)["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def resources(call: dict[str, Any]) -> list[str]:
    """The ARNs a call acts on, as IAM evaluates them."""
    service, op, p = call["service"], call["operation"], call["params"]
    base = f"arn:aws:{service}:{REGION}:{ACCOUNT}"
    if service == "ses":
        if op == "SendTemplatedEmail":
            return [f"{base}:identity/{p['Source']}", f"{base}:template/{p['Template']}"]
        if "TemplateName" in p:
            return [f"{base}:template/{p['TemplateName']}"]
        return ["*"]
    if service == "cognito-idp":
        return [f"{base}:userpool/{p['UserPoolId']}"]
    if service == "sqs":
        return [f"{base}:{p['QueueUrl'].rstrip('/').rsplit('/', 1)[-1]}"]
    if service == "dynamodb":
        return [f"{base}:table/{p['TableName']}"]
    if service == "s3":  # object ARNs carry neither region nor account
        return [f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"]
    raise AssertionError(f"no ARN rule for {service}")


def matches(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)


def allowed(statements: list[dict[str, Any]], action: str, arns: list[str]) -> bool:
    def hit(effect: str, arn: str) -> bool:
        return any(
            s["Effect"] == effect
            and matches(as_list(s["Action"]), action)
            and matches(as_list(s["Resource"]), arn)
            for s in statements
        )

    return all(hit("Allow", arn) and not hit("Deny", arn) for arn in arns)


def calls(role: str) -> list[dict[str, Any]]:
    path = AWS_CALLS / f"{role}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_call_is_allowed_and_every_permission_is_used(aws_env: bootstrap.Environment) -> None:
    recorded = {role: calls(role) for role in POLICIES}
    if not recorded["operator"] or not recorded["worker"]:
        pytest.skip("runs on the whole suite (the operator and worker tests record the calls)")
    values = {
        "Region": REGION,
        "AccountId": ACCOUNT,
        "NamePrefix": "",
        "UserPoolId": aws_env.user_pool_id,
        "SesIdentity": aws_env.email_sender,
    }
    problems = []
    used_by: dict[str, set[str]] = {}
    for role, role_calls in recorded.items():
        statements = policy(role, values)
        used = used_by.setdefault(POLICIES[role], set())
        for call in role_calls:
            action = iam_action(call)
            used.add(action)
            if not allowed(statements, action, resources(call)):
                problems.append(f"{role}: {action} on {resources(call)} is not allowed")
    for chart, used in used_by.items():
        statements = policy(next(r for r, c in POLICIES.items() if c == chart), values)
        granted = {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}
        problems += [
            f"{chart}: the policy allows {a}, which the code never calls"
            for a in sorted(granted - used)
        ]
    assert not sorted(set(problems)), "\n".join(sorted(set(problems)))
    # The API's only signed calls: the presigned logo uploads it lends to browsers, and the
    # signup verification emails it queues (the workers send them; the API never calls SES).
    assert {(c["service"], c["operation"]) for c in recorded["api"]} <= {
        ("s3", "PutObject"),
        ("sqs", "SendMessage"),
    }
