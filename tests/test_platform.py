"""`make up` / `make down` as a newcomer runs them: a fresh clone of this working tree, a shell
with the machine's own settings but no AWS, KUBECONFIG or HERD_* variables and none of the
project's tools on PATH. Then, after `set -a; . .herd/env`: a signup through the API whose
verification link (from `herd mail`) ends in a Ready Tenant and one welcome email, every
Application Healthy with pods running on kwok nodes, the examples Ready, `herd promote`
bringing a dev commit to prod, `herd status` green, and nothing left running after `make down`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from herd_devkit.local.gitrepo import Repo
from herd_devkit.local.process import alive, read_state
from herd_devkit.settings import get_settings

from .helpers import ROOT, wait_for

pytestmark = pytest.mark.slow

# What a newcomer's shell does not have: credentials, regions and endpoints of AWS (the CA
# bundle is the machine's and stays), a cluster, our settings, what uv, make and pytest set
# for the test run itself. uv's own settings (package index, TLS) are the machine's and stay.
_NOT_A_NEWCOMERS = ("HERD_", "PYTEST_", "VIRTUAL_ENV", "KUBE", "USE_EXISTING_CLUSTER", "MAKE")
_RUN_STATE = {"UV", "UV_RUN_RECURSION_DEPTH", "MFLAGS", "COLUMNS"}


def newcomer_env() -> dict[str, str]:
    tools = str(get_settings().tools_dir)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_NOT_A_NEWCOMERS)
        and k not in _RUN_STATE
        and not (k.startswith("AWS_") and k != "AWS_CA_BUNDLE")
    }
    # Nor a ~/.aws of credentials or a metadata service to fall back on.
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env["PATH"] = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if p and not p.startswith(tools) and ".venv" not in Path(p).parts
    )
    env["COLUMNS"] = "250"
    return env


def fresh_clone(dest: Path) -> Path:
    """This working tree as a clone has it: tracked and new files, nothing ignored."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = ROOT / rel
        if src.is_symlink():  # as git checks one out (charts/<chart>/charts/herd-lib)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).symlink_to(os.readlink(src))
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=newcomer", "-c", "user.email=newcomer@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return dest


def newcomer(clone: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`args` run in the clone with the newcomer's environment."""
    return subprocess.run(
        list(args),
        cwd=clone,
        env=newcomer_env(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def shell(clone: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in bash after `set -a; . .herd/env; set +a`, as the README says."""
    return newcomer(clone, "bash", "-c", f"set -a; . .herd/env; set +a\n{script}")


def make(clone: Path, target: str) -> subprocess.CompletedProcess[str]:
    return newcomer(clone, "make", target, timeout=1200)


def records(state: Path) -> list[object]:
    return [r for f in state.rglob("*.json") for r in read_state(f)[0]]


def test_newcomer_make_up_signup_promote_make_down(tmp_path: Path) -> None:
    if get_settings().use_existing_cluster:
        pytest.skip("runs its own embedded clusters")
    clone = fresh_clone(tmp_path / "herd")
    state = clone / ".herd"
    try:
        up = make(clone, "up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "sign up at http://127.0.0.1:" in up.stdout
        assert "dev: every Application Synced and Healthy" in up.stdout
        assert "prod: every Application Synced and Healthy" in up.stdout

        # The env file sources cleanly and gives the shell everything it needs.
        sourced = shell(clone, "env -0")
        assert sourced.returncode == 0 and sourced.stderr == "", sourced.stderr
        env = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if "=" in item)
        assert env["AWS_REGION"] and env["AWS_ACCESS_KEY_ID"] and env["AWS_ENDPOINT_URL"]
        assert json.loads(env["HERD_GIT_URL_REWRITES"])
        assert env["PATH"].startswith(str(state / "bin"))
        tools = shell(clone, "command -v herd kubectl helm uv")
        assert tools.returncode == 0, tools.stderr
        assert all(p.startswith(str(state / "bin")) for p in tools.stdout.split()), tools.stdout
        contexts = shell(
            clone, "kubectl config get-contexts -o name; kubectl config current-context"
        )
        assert contexts.stdout.split() == ["herd-dev", "herd-prod", "herd-dev"], contexts.stdout

        # Idempotent: a second `make up` keeps what runs.
        pids = sorted(r.pid for r in records(state))  # type: ignore[attr-defined]
        assert make(clone, "up").returncode == 0
        assert sorted(r.pid for r in records(state)) == pids  # type: ignore[attr-defined]

        # A signup through the API sends one verification email; its link, read from `herd
        # mail` and followed as the signup page does, makes a Ready Tenant in dev and one
        # welcome email.
        slug = f"local-{uuid.uuid4().hex[:6]}"
        email = f"owner@{slug}.example.com"
        answer = httpx.post(
            f"{env['HERD_API_URL']}/v1/signups",
            timeout=30,
            json={
                "displayName": "Local Farms",
                "slug": slug,
                "adminEmail": email,
                "plan": "starter",
            },
        )
        assert answer.status_code == 202, answer.text

        def verification_link() -> str | None:
            # Piped, `herd mail` prints whole values a line each: to, template, subject, id, link.
            rows = [r.split("\t") for r in shell(clone, "herd mail").stdout.splitlines()]
            return next((r[4] for r in rows if r[0] == email and "#verify/" in r[4]), None)

        link = wait_for(verification_link, 60, "the verification email in `herd mail`")
        page, token = link.split("#verify/")
        assert httpx.get(page, timeout=30).status_code == 200  # the signup page, which posts:
        verified = httpx.post(
            f"{env['HERD_API_URL']}/v1/signups/verify", json={"token": token}, timeout=30
        )
        assert verified.status_code == 202, verified.text
        wait_for(
            # The worker can report the email before the operator's status write says Ready.
            lambda: (
                {"WelcomeEmailSent", "Ready"} <= set(shell(clone, wait_email(slug)).stdout.split())
            ),
            120,
            "Tenant Ready and its welcome email sent",
        )
        # The admin page has an admin: make up printed its sign-in, and it lists the signup.
        printed = re.search(r"sign in as (\S+) with password (\S+) ", up.stdout)
        assert printed, up.stdout[-3000:]
        signin = httpx.post(
            f"{env['HERD_API_URL']}/v1/auth/token",
            json={"username": printed.group(1), "password": printed.group(2)},
            timeout=30,
        )
        assert signin.status_code == 200, signin.text
        listed = httpx.get(
            f"{env['HERD_API_URL']}/v1/tenants",
            params={"phase": "Ready"},
            headers={"Authorization": f"Bearer {signin.json()['idToken']}"},
            timeout=30,
        )
        assert listed.status_code == 200 and slug in listed.text, listed.text
        assert 'href="/admin"' in httpx.get(f"{env['HERD_API_URL']}/", timeout=30).text
        mail = shell(clone, "herd mail")
        assert mail.returncode == 0 and mail.stderr == "", mail.stderr
        # Piped, `herd mail` prints whole values a line each (a table would cut them short).
        rows = [line.split("\t") for line in mail.stdout.splitlines() if email in line]
        assert [r[0] for r in rows] == [email, email], mail.stdout
        assert sorted(r[2] for r in rows) == [
            "Confirm your Herd signup: Local Farms",
            "Welcome to Herd, Local Farms",
        ], mail.stdout

        # A crashed program comes back with `make up`. By now git owns the operator chart:
        # installing it again would fight the sync's field manager, and make up failed.
        operator_state = state / "services" / "operator-dev.json"
        dead = read_state(operator_state)[0]
        for record in dead:
            os.kill(record.pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(r) for r in dead), 30, "the dev operator killed")
        again = make(clone, "up")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        restarted = {r.pid for r in read_state(operator_state)[0]}
        assert restarted and restarted.isdisjoint(r.pid for r in dead)
        # (The examples below are reconciled by the restarted dev operator.)

        # kwok runs the platform's pods; the examples apply to dev and turn Ready.
        pods = shell(clone, "kubectl get pods -A --no-headers")
        running = [line for line in pods.stdout.splitlines() if " Running " in line]
        assert any("herd-api-" in line for line in running), pods.stdout
        assert any("openremote-postgresql-0" in line for line in running), pods.stdout
        applied = shell(
            clone,
            "kubectl apply -n default -f examples/ && kubectl wait -n default --for=condition=Ready"
            " --timeout=90s sestemplates/maintenance-notice cognitoclients/herd-console"
            " cognitoclients/herd-backend",
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr

        # A commit to dev, then `herd promote`, reaches prod.
        origin = Repo(origin=state / "origin" / "origin.git", work=state / "origin" / "work")
        values = yaml.safe_load((clone / "apps" / "herd-api" / "values.yaml").read_text())
        values["image"]["tag"] = "7.7.7"
        origin.commit(
            "dev", "herd-api 7.7.7", {"apps/herd-api/values.yaml": yaml.safe_dump(values)}
        )
        # Gated on dev: refused (and nothing merged) until dev is Synced and Healthy at the
        # new head, then it goes through.
        promote = wait_for(
            lambda: (p := shell(clone, "herd promote")).returncode == 0 and p,
            180,
            "dev at its head, and the promotion through",
        )
        assert "dev is Synced and Healthy at dev" in promote.stdout, promote.stdout
        wait_for(
            lambda: shell(
                clone,
                "kubectl --context herd-prod -n herd-system get deploy herd-api"
                " -o jsonpath='{.spec.template.spec.containers[0].image}'",
            ).stdout.endswith(":7.7.7"),
            120,
            "prod at 7.7.7",
        )
        status = wait_for(
            lambda: (s := shell(clone, "herd status")).returncode == 0 and s,
            120,
            "herd status green after the promotion",
        )
        assert "operator-dev" in status.stdout and "Healthy" in status.stdout
    finally:
        started = records(state)
        down = make(clone, "down")
        assert down.returncode == 0, down.stdout + down.stderr
    assert started and not any(alive(r) for r in started)  # type: ignore[arg-type]
    assert shell(clone, "herd status").returncode == 1


def wait_email(slug: str) -> str:
    return (
        f"kubectl get tenant -n tenants {slug} -o jsonpath="
        "'{range .status.conditions[?(@.status==\"True\")]}{.type} {end}'"
    )
