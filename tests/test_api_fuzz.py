"""Schemathesis fuzzes the API's own OpenAPI document against the real server: no 5xx.

Each operation's strategy is driven by Hypothesis directly (schemathesis' lazy pytest
fixture loader does not work with pytest 9.2).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from .helpers import ApiProcess


@pytest.mark.slow
def test_no_server_errors(api_server: ApiProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/signups",
        "GET /v1/signups/{slug}",
        "GET /v1/tenants",
        "DELETE /v1/tenants/{slug}",
        "POST /v1/auth/token",
        "GET /healthz",
        "GET /readyz",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api_server.url, checks=[not_a_server_error])

        fuzz()
