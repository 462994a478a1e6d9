"""The fast layer: tests that run in this process alone. No control plane, no moto server,
no program started; AWS is moto in-process (`mock_aws`), Kubernetes is a fake where one is
needed. `make test-fast` runs this folder; `make test` runs it with everything else.

The real-parts fixtures of tests/conftest.py are refused here, so a slow test cannot slip
into this folder by asking for one."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd_devkit.local import bootstrap
from herd_devkit.settings import Settings

from .fakes import in_process_aws

# The session fixtures of tests/conftest.py that start real parts (or need them).
REAL_PARTS = {
    "cluster",
    "api",
    "namespace",
    "make_namespace",
    "moto",
    "aws_settings",
    "crds",
    "proxy",
    "aws_env",
    "user_pool",
    "openremote",
    "operator",
    "live_operator",
    "operator_env",
    "identities",
    "worker",
    "worker_env",
    "tenants_ns",
    "api_env",
    "api_server",
    "users",
    "objects",
}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = REAL_PARTS.intersection(getattr(item, "fixturenames", ()))
        if used and item.path.is_relative_to(HERE):
            raise pytest.UsageError(
                f"{item.nodeid} asks for {', '.join(sorted(used))}: real parts belong in "
                "tests/, not in the fast layer"
            )


@pytest.fixture(scope="module")
def module_aws() -> Iterator[Settings]:
    """One moto per module: starting one costs a second (boto3 reloads its models)."""
    with in_process_aws() as settings:
        yield settings


_tests = itertools.count(1)


@pytest.fixture
def aws(module_aws: Settings) -> Settings:
    """The module's moto, with a name prefix of this test's own: tests share no AWS object."""
    return module_aws.model_copy(update={"aws_name_prefix": f"t{next(_tests)}-"})


@pytest.fixture
def aws_side(aws: Settings) -> bootstrap.Environment:
    """An environment's AWS side, as `herd aws bootstrap` makes it, in moto in-process."""
    return bootstrap.bootstrap(aws)
