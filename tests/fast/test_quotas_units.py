"""The quota table (herd_core.quotas) covers every Cognito and SES call Herd's programs may
make, and the pacer spaces calls as it says. No AWS: the charts' IAM policies list exactly
the calls the programs make (tests/test_zz_iam checks that against the calls they made)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from herd_core import pacing, quotas
from herd_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ("herd-operator", "herd-api", "herd-workers")


def granted(service: str) -> set[str]:
    """The actions of `service` the charts' policies grant (one policy per program)."""
    actions: set[str] = set()
    for chart in CHARTS:
        policy = json.loads((ROOT / "charts" / chart / "iam-policy.json").read_text())
        for statement in policy["Statement"]:
            listed = statement["Action"]
            for action in [listed] if isinstance(listed, str) else listed:
                if action.startswith(f"{service}:"):
                    actions.add(action.split(":", 1)[1])
    return actions


def test_every_cognito_and_ses_call_of_the_programs_counts_against_a_rate() -> None:
    for service, prefix in (("cognito-idp", "cognito-idp"), ("ses", "ses")):
        for operation in granted(prefix):
            if operation in quotas.SES_SENDS:
                assert quotas.QUOTAS["ses.sending_rate"].operations  # per recipient
                continue
            assert quotas.rates_of(service, operation), f"{service}:{operation} has no rate"


def test_each_row_is_dated_sourced_and_answers_as_aws() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", quotas.AS_OF)
    for quota in quotas.QUOTAS.values():
        assert quota.source.startswith("https://docs.aws.amazon.com/"), quota.key
        assert quota.error[0], quota.key
        assert quota.default > 0
        assert quota.maximum is None or quota.maximum >= quota.default
    clients = quotas.QUOTAS["cognito.app_clients_per_user_pool"]
    assert (clients.default, clients.maximum, clients.adjustable) == (1_000, 10_000, True)
    assert quotas.made_by("cognito-idp", "CreateUserPoolClient") is clients
    category = {q.key for q in quotas.rates_of("cognito-idp", "AdminCreateUser")}
    assert category == {"cognito.rate.UserCreation"}
    (reads,) = quotas.rates_of("cognito-idp", "DescribeUserPoolClient")
    assert (reads.default, reads.per_pool) == (15, 5.0)


def test_an_account_s_quotas_are_checked_against_the_table() -> None:
    assert Settings(aws_quotas={"cognito.app_clients_per_user_pool": 10_000}).aws_quotas
    with pytest.raises(ValueError, match="unknown quota keys"):
        Settings(aws_quotas={"cognito.app_clients": 3})
    assert quotas.limit("cognito.app_clients_per_user_pool", {}) == 1_000
    assert (
        quotas.limit("cognito.app_clients_per_user_pool", {"cognito.app_clients_per_user_pool": 3})
        == 3
    )


def test_the_pacer_spaces_every_thread_s_calls() -> None:
    pacer = pacing.Pacer(20.0)  # 50 ms apart
    began = time.monotonic()
    threads = [threading.Thread(target=pacer.wait) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - began >= 5 * 0.05 - 0.01


def test_a_call_waits_for_its_category_and_its_pool() -> None:
    """CreateUserPoolClient: UserPoolClientUpdate (15/s) and 5/s for its pool; at a share of
    1, the 3rd call against one pool waits 2 x 0.2 s, against two pools it does not."""
    pacing.reset()
    one = [
        pacing.pace("cognito-idp", "r", "CreateUserPoolClient", {"UserPoolId": "p"}, {}, 1.0)
        for _ in range(3)
    ]
    assert sum(one) >= 0.35
    pacing.reset()
    two = [
        pacing.pace("cognito-idp", "r", "CreateUserPoolClient", {"UserPoolId": f"p{i}"}, {}, 1.0)
        for i in range(3)
    ]
    assert sum(two) < 0.2  # only the category's 1/15 s between them
    pacing.reset()
