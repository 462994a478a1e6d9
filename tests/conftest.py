"""Session-wide real parts, built by devkit's Stack (as `make up` and the benches build
theirs): one embedded control plane (or USE_EXISTING_CLUSTER), one moto server, the programs
under their charts' ServiceAccounts; a fresh namespace and fresh git repositories per test."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from playwright.sync_api import Browser, sync_playwright

from herd_core import aws
from herd_core.constants import GROUP, VERSION
from herd_devkit.local import bootstrap
from herd_devkit.local.controlplane import ControlPlane
from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.moto_server import MotoServer
from herd_devkit.local.process import free_port, leftovers, stop, wait_until
from herd_devkit.settings import Settings, get_settings
from herd_devkit.stack import Stack

from .faultproxy import FaultProxy
from .helpers import ApiProcess, Custom, OperatorProcess, WorkerProcess, sync_project
from .openremote_stub import CLIENT_ID as STUB_CLIENT_ID
from .openremote_stub import CLIENT_SECRET as STUB_CLIENT_SECRET
from .openremote_stub import OpenRemoteStub

TENANTS = "tenants"
PROGRAMS_NAMESPACE = "herd-system"  # where the herd charts run, as on EKS
ADOPTING = "adopt"  # namespaces named adopt-* may adopt AWS objects (HERD_ADOPTION_NAMESPACES)
# Every AWS call of the operator, API and worker processes (tests/test_zz_iam.py reads it).
AWS_CALLS = Path(tempfile.gettempdir()) / f"herd-aws-calls-{os.getpid()}"
AWS_CALLS.mkdir(parents=True, exist_ok=True)
WEBHOOK_PORT, WEBHOOK_SECRET = free_port(), "webhook-test-secret"
WELCOME_TEMPLATE = {
    "subject": "Welcome to Herd, {{displayName}}",
    "text": "Hello {{displayName}}, your tenant {{slug}} is ready: {{loginURL}}",
}
# As apps/platform/signup-verification-template.yaml, shorter.
VERIFICATION_TEMPLATE = {
    "subject": "Confirm your Herd signup: {{displayName}}",
    "text": "Tenant {{slug}} ({{plan}}): confirm before {{expiresAt}} at {{verifyURL}}",
}

# Never real AWS from a test run: the shell's AWS credentials are dropped (never added), every
# client of the tests goes to moto with moto's local keys (MotoServer.settings), and each
# program gets its AWS variables from its fixture. Nothing is set process-wide: the product
# must bring its own credentials where it is responsible for them.
for _var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)
# The tests' own AWS calls make one attempt (aws_max_attempts=1: a moto 500 is seen, not
# retried) but, as any SDK client, try again while the local AWS throttles them (it holds
# AWS's rates: SES's GetTemplate at 1 a second is shared with the operator's drift sweep).
# The programs' environments leave HERD_ settings out (Stack.program_env): their throttles
# stay theirs to handle.
os.environ.setdefault("HERD_AWS_THROTTLE_ATTEMPTS", "16")
# ...and pace them within what the suite's operator leaves (it takes half: operator_env). At
# SES's one a second per action, two calls less than a second apart are one too many: the
# tests' polls at 0.8 (the default share) throttled four in five of the operator's calls,
# each of them retried at the operator's own pace, and its reconciles missed their tests'
# deadlines.
os.environ.setdefault("HERD_AWS_PACE_SHARE", "0.4")


@dataclass
class Cluster:
    kubeconfig: Path
    embedded: ControlPlane | None  # None when the tests run against an existing cluster


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's stack; each part is started by the fixture that needs it."""
    built = Stack(root=tmp_path_factory.mktemp("stack"), settings=get_settings())
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="session")
def cluster(stack: Stack) -> Iterator[Cluster]:
    s = get_settings()
    if s.use_existing_cluster:
        if not s.kubeconfig:
            pytest.fail("USE_EXISTING_CLUSTER=true needs KUBECONFIG")
        yield Cluster(kubeconfig=s.kubeconfig, embedded=None)
        return
    cp = stack.cluster("test")
    try:
        yield Cluster(kubeconfig=cp.kubeconfig, embedded=cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[ApiClient]:
    with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted (with everything in it) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount controller makes `default` shortly after; some tests need it.
    wait_until(lambda: bool(core.list_namespaced_service_account(name).items), 30)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def make_namespace(api: ApiClient) -> Iterator[Callable[[str], str]]:
    """More fresh namespaces, named `<prefix>-<random>`, deleted afterwards."""
    core, made = client.CoreV1Api(api), []

    def make(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def moto(stack: Stack) -> Iterator[MotoServer]:
    server = stack.moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_settings(moto: MotoServer) -> Settings:
    """Settings for the tests' own AWS calls: straight to moto, no retries of moto's 500s."""
    return moto.settings(get_settings(), aws_region="eu-west-1", aws_max_attempts=1)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A real bare repository with `main` and `dev` at the same first commit."""
    return Repo.create(tmp_path / "repo", {"README.md": "# test repo\n"})


# -- Applications (tests/applications.py) ---------------------------------------------------
@pytest.fixture
def gitrepo(tmp_path: Path) -> Repo:
    """A real bare repository for a test's Applications (`main` and `dev`)."""
    return Repo.create(tmp_path / "repo", {"README.md": "# apps\n"})


@pytest.fixture
def project(api: ApiClient, namespace: str) -> Iterator[str]:
    """The test namespace's Project: its Applications act as ServiceAccount `sync` there."""
    name = sync_project(api, namespace)
    yield name
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, "projects", name)


# -- the operator against the cluster, with AWS behind a fault-injecting proxy ------------
@pytest.fixture(scope="session")
def crds(stack: Stack, api: ApiClient) -> None:
    stack.install_crds(api)


@pytest.fixture(scope="session")
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    p = FaultProxy(moto.url).start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def aws_env(stack: Stack, moto: MotoServer) -> bootstrap.Environment:
    """The AWS side of an environment, as `herd aws bootstrap` makes it (made once; tests
    use unique names instead of resets)."""
    return stack.bootstrap_aws(aws_max_attempts=1)


@pytest.fixture(scope="session")
def user_pool(aws_env: bootstrap.Environment) -> str:
    return aws_env.user_pool_id


@pytest.fixture(scope="session")
def openremote() -> Iterator[OpenRemoteStub]:
    stub = OpenRemoteStub().start()
    yield stub
    stub.stop()


def _base_env(
    stack: Stack, kubeconfig: Path, endpoint: str, aws_env: bootstrap.Environment
) -> dict[str, str]:
    """A program's environment as the Stack makes it; no retries of moto's 500s."""
    return stack.program_env(kubeconfig, aws_env, endpoint, HERD_AWS_MAX_ATTEMPTS="1")


@pytest.fixture(scope="session")
def operator_identity(
    stack: Stack,
    api: ApiClient,
    cluster: Cluster,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The operator chart installed (its ServiceAccount, ClusterRole and bindings) and a
    kubeconfig with a TokenRequest token of that ServiceAccount: the session's operator is
    judged by exactly the RBAC its chart grants, as on EKS, never by the admin's."""
    return stack.chart_identity(
        api,
        cluster.kubeconfig,
        "herd-operator",
        tmp_path_factory.mktemp("operator-identity") / "herd-operator.kubeconfig",
        set_values={"config.tenantsNamespace": TENANTS},
        namespace=PROGRAMS_NAMESPACE,
    )


@pytest.fixture(scope="session")
def operator_env(
    tmp_path_factory: pytest.TempPathFactory,
    stack: Stack,
    operator_identity: Path,
    proxy: FaultProxy,
    aws_env: bootstrap.Environment,
    openremote: OpenRemoteStub,
) -> dict[str, str]:
    return {
        **_base_env(stack, operator_identity, proxy.url, aws_env),
        "HERD_DRIFT_INTERVAL": "2",
        # Half of each AWS rate for the suite's operator (its drift sweep every 2 s would take
        # 80% of SES's 1 a second): the tests' own reads of the same account get the rest.
        "HERD_AWS_PACE_SHARE": "0.5",
        "HERD_RETRY_BACKOFF_BASE": "1",
        "HERD_RETRY_BACKOFF_MAX": "5",
        "HERD_WAITING_DELAY": "1",
        "HERD_METRICS_PORT": str(free_port()),
        "HERD_TENANTS_NAMESPACE": TENANTS,
        "HERD_LOGIN_URL_TEMPLATE": "https://platform-test.herd-itt.com/manager/?realm={slug}",
        "HERD_OPENREMOTE_ENABLED": "true",
        "HERD_OPENREMOTE_URL": openremote.url,
        "HERD_OPENREMOTE_CLIENT_ID": STUB_CLIENT_ID,
        "HERD_OPENREMOTE_CLIENT_SECRET": STUB_CLIENT_SECRET,
        "HERD_STATE_DIR": str(tmp_path_factory.mktemp("operator-state")),
        "HERD_AWS_CALL_LOG": str(AWS_CALLS / "operator.jsonl"),
        "HERD_APP_TICK": "1",
        "HERD_APP_POLL_INTERVAL": "2",
        "HERD_WEBHOOK_PORT": str(WEBHOOK_PORT),
        "HERD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HERD_ADOPTION_NAMESPACES": f'["{ADOPTING}-*"]',
        # Tests' Applications live in their fresh t-* namespaces and read local repositories.
        "HERD_APPLICATION_NAMESPACES": '["t-*", "herd-system"]',
        "HERD_LOCAL_SOURCES": "true",
    }


# -- the API and the worker under their charts' ServiceAccounts -----------------------------


@pytest.fixture(scope="session")
def identities(
    stack: Stack,
    api: ApiClient,
    cluster: Cluster,
    tenants_ns: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """herd-api and herd-workers installed from their charts (ServiceAccount, Role, binding),
    and a kubeconfig with a TokenRequest token for each: the API and the worker processes of
    the tests are judged by exactly the RBAC their charts grant, as on EKS."""
    folder = tmp_path_factory.mktemp("identities")
    return {
        chart: stack.chart_identity(
            api,
            cluster.kubeconfig,
            chart,
            folder / f"{chart}.kubeconfig",
            set_values={"config.tenantsNamespace": tenants_ns},
            namespace=PROGRAMS_NAMESPACE,
        )
        for chart in ("herd-api", "herd-workers")
    }


@pytest.fixture(scope="session")
def worker_env(
    stack: Stack,
    moto: MotoServer,
    aws_env: bootstrap.Environment,
    identities: dict[str, Path],
) -> dict[str, str]:
    return {
        **_base_env(stack, identities["herd-workers"], moto.url, aws_env),
        "HERD_WORKER_WAIT_SECONDS": "1",
        # No HERD_WORKER_MAX_SEND_RATE: the worker reads SES's quota (the local AWS, out of
        # the sandbox: 14/s).
        "HERD_AWS_CALL_LOG": str(AWS_CALLS / "worker.jsonl"),
        "HERD_WORKER_RETRY_BASE": "0.25",
        "HERD_WORKER_DLQ_INTERVAL": "1",
    }


@pytest.fixture(scope="session")
def worker(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(
        env=worker_env, log=tmp_path_factory.mktemp("worker") / "worker.log"
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tenants_ns(api: ApiClient, operator: OperatorProcess) -> str:
    """The tenants namespace, with the welcome and signup-verification SESTemplates Ready."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=TENANTS)))
    objects = Custom(api, TENANTS)
    objects.create("SESTemplate", "sestemplates", "welcome", WELCOME_TEMPLATE)
    objects.create("SESTemplate", "sestemplates", "signup-verification", VERIFICATION_TEMPLATE)
    objects.wait_condition("sestemplates", "welcome")
    objects.wait_condition("sestemplates", "signup-verification")
    return TENANTS


@pytest.fixture(scope="session")
def operator(
    crds: None, operator_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        env=operator_env, log=tmp_path_factory.mktemp("operator") / "operator.log"
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def live_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session operator, restarted if an earlier test killed it."""
    if not operator.running():
        operator.start()
    return operator


@pytest.fixture
def objects(api: ApiClient, namespace: str) -> Custom:
    return Custom(api, namespace)


# -- the signup API as a real uvicorn process ---------------------------------------------
ADMIN = ("boss@herd-itt.com", "Adm1n-Passw0rd!")
MEMBER = ("member@herd-itt.com", "Memb3r-Passw0rd!")


def _user(settings: Settings, pool: str, who: tuple[str, str], groups: tuple[str, ...]) -> None:
    idp = aws.client("cognito-idp", settings)
    idp.admin_create_user(
        UserPoolId=pool,
        Username=who[0],
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": who[0]}],
    )
    idp.admin_set_user_password(UserPoolId=pool, Username=who[0], Password=who[1], Permanent=True)
    for group in groups:
        idp.admin_add_user_to_group(UserPoolId=pool, Username=who[0], GroupName=group)


@pytest.fixture(scope="session")
def api_env(
    stack: Stack,
    moto: MotoServer,
    aws_env: bootstrap.Environment,
    identities: dict[str, Path],
) -> dict[str, str]:
    return {
        **_base_env(stack, identities["herd-api"], moto.url, aws_env),
        "HERD_TENANTS_NAMESPACE": TENANTS,
        "HERD_JWKS_URL": f"{moto.url}/{aws_env.user_pool_id}/.well-known/jwks.json",
        "HERD_SIGNUP_BURST": "100000",
        # The session's API serves every test's signups, all from one address: the budgets'
        # defaults (all clients: a burst of 200, then 0.1/s; one client: 10, then 1 in 10
        # minutes; one address's emails: 3, then 1 an hour) are for production; test_api's
        # budget tests set their own.
        "HERD_SIGNUP_GLOBAL_BURST": "100000",
        "HERD_SIGNUP_CLIENT_BURST": "100000",
        "HERD_SIGNUP_RECIPIENT_BURST": "100000",
        # A signup makes its Tenant at once, as the tests of what follows (provisioning,
        # status, admin, logos) need. The `verifying_api` fixture runs the default: each
        # signup held until the link in its verification email is followed (N9).
        "HERD_SIGNUP_EMAIL_VERIFICATION": "false",
        "HERD_AWS_CALL_LOG": str(AWS_CALLS / "api.jsonl"),
        "HERD_CORS_ORIGINS": '["https://console.herd-itt.com"]',
    }


@pytest.fixture(scope="session")
def api_server(
    api_env: dict[str, str], tenants_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = ApiProcess(env=api_env, log=tmp_path_factory.mktemp("api") / "api.log")
    proc.env["HERD_PUBLIC_URL"] = proc.url
    proc.start()
    yield proc
    proc.stop()


SIGNUP_TOKEN_KEY = "test-signup-token-key-0123456789abcdef"  # verifying_api's link key


@pytest.fixture(scope="session")
def verifying_api(
    api_env: dict[str, str], tenants_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """The API as the chart and `make up` run it: each signup held until the link in its
    verification email is followed (N9). Beside `api_server`, against the same cluster."""
    proc = ApiProcess(
        env={
            **api_env,
            "HERD_SIGNUP_EMAIL_VERIFICATION": "true",
            "HERD_SIGNUP_TOKEN_KEY": SIGNUP_TOKEN_KEY,
        },
        log=tmp_path_factory.mktemp("api-verifying") / "api.log",
    )
    proc.env["HERD_PUBLIC_URL"] = proc.url
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def users(moto: MotoServer, aws_env: bootstrap.Environment) -> dict[str, tuple[str, str]]:
    settings = moto.settings(get_settings(), aws_max_attempts=1)
    _user(settings, aws_env.user_pool_id, ADMIN, ("admins",))
    _user(settings, aws_env.user_pool_id, MEMBER, ())
    return {"admin": ADMIN, "member": MEMBER}


# -- nothing left running ---------------------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down: no process the suite started may still run. That
    covers what this process spawned and what detached `herd` commands recorded under the
    suite's temporary folders. A leftover is killed, named, and fails the run."""
    basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    left = {r.pid: r for r in leftovers(basetemp)}
    for record in left.values():
        with contextlib.suppress(RuntimeError):
            stop(record, grace=5)
    if left:
        names = ", ".join(f"{r.name} (pid {r.pid}, log {r.log})" for r in left.values())
        session.config.get_terminal_writer().line(f"processes left running: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def uncached_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of the module's own whose API server keeps no watch cache: watches
    and list pages are served by etcd itself, so below its compacted revision they answer
    410 Gone (a cached kind replays from the watch cache instead, even after a compaction).
    The test may compact its etcd (`plane.etcd`)."""
    if get_settings().use_existing_cluster:
        pytest.skip("compacts the etcd of a cluster of its own")
    settings = get_settings().model_copy(update={"state_dir": tmp_path_factory.mktemp("gone")})
    plane = dataclasses.replace(
        ControlPlane.named("gone", settings, with_controller_manager=False),
        apiserver_args=("--watch-cache=false",),
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, for the tests of the signup and admin pages."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make setup` installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # No network of its own: only the loopback pages the tests open.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
