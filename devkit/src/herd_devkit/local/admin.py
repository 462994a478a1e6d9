"""The local platform's admin account: `make up` seeds one Cognito user in the `admins` group
of dev's user pool and prints how to sign in with it. Local only: on EKS the first admin is
made by hand (docs/eks.md); this password lives in `.herd/admin.json` (mode 0600), which
`make down` leaves alone so the same sign-in works after the next `make up`."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from herd_core import aws
from herd_devkit.settings import Settings

EMAIL = "admin@herd.localhost"
GROUP = "admins"
FILE = "admin.json"
TOKEN_KEY_FILE = "signup-token.key"


@dataclass(frozen=True)
class LocalAdmin:
    email: str
    password: str


def credentials(state: Path) -> LocalAdmin:
    """The local admin's email and password: read from the state folder, made on first use."""
    path = state / FILE
    if path.exists():
        saved = json.loads(path.read_text())
        return LocalAdmin(saved["email"], saved["password"])
    # Meets Cognito's default policy: upper, lower, digit and symbol, 8+ characters.
    admin = LocalAdmin(EMAIL, f"Herd-{secrets.token_urlsafe(12)}-7a")
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"email": admin.email, "password": admin.password}, out)
    return admin


def signup_token_key(state: Path) -> str:
    """The key the local API signs signup verification links with (HERD_SIGNUP_TOKEN_KEY; on
    EKS, a Secret): made on first use in `.herd/signup-token.key` (mode 0600) and kept, so a
    link emailed before a restart of the platform still works."""
    path = state / TOKEN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


def seed(settings: Settings, pool_id: str, state: Path) -> LocalAdmin:
    """Create the admin (or reset its password to the saved one): idempotent, and right again
    after moto was started afresh."""
    admin = credentials(state)
    idp: Any = aws.client("cognito-idp", settings)
    try:
        idp.admin_create_user(
            UserPoolId=pool_id,
            Username=admin.email,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": admin.email},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
    except ClientError as err:
        if err.response["Error"]["Code"] != "UsernameExistsException":
            raise
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username=admin.email, Password=admin.password, Permanent=True
    )
    idp.admin_add_user_to_group(UserPoolId=pool_id, Username=admin.email, GroupName=GROUP)
    return admin
