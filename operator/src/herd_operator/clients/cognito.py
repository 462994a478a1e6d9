"""Cognito user-pool API: app clients and users."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from herd_core import aws
from herd_core.aws import issuer_url
from herd_core.errors import code, is_not_found
from herd_operator.clients.coalesce import Coalesced
from herd_operator.settings import Settings

__all__ = ["Cognito", "attribute", "issuer_url"]


_listers: dict[tuple[int, str], Coalesced[list[dict[str, Any]]]] = {}
_listers_lock = threading.Lock()


class Cognito:
    def __init__(self, settings: Settings) -> None:
        self.region = settings.aws_region
        self._c: Any = aws.shared("cognito-idp", settings)

    # -- app clients ---------------------------------------------------------------------
    def clients_named(self, pool_id: str, name: str) -> list[str]:
        """Ids of the pool's clients of that name, from a list started after this call
        (shared with concurrent callers: clients/coalesce.py)."""
        with _listers_lock:
            lister = _listers.get((id(self._c), pool_id))
            if lister is None:
                lister = _listers[(id(self._c), pool_id)] = Coalesced(
                    lambda: list(self._clients(pool_id))
                )
        return [c["ClientId"] for c in lister.get() if c["ClientName"] == name]

    def _clients(self, pool_id: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"UserPoolId": pool_id, "MaxResults": 60}
        while True:
            page = self._c.list_user_pool_clients(**kwargs)
            yield from page.get("UserPoolClients", [])
            if not page.get("NextToken"):
                return
            kwargs["NextToken"] = page["NextToken"]

    def create_client(
        self, pool_id: str, params: dict[str, Any], generate_secret: bool
    ) -> dict[str, Any]:
        """The client as created, secret included (as describe_client gives it)."""
        result: dict[str, Any] = self._c.create_user_pool_client(
            UserPoolId=pool_id, GenerateSecret=generate_secret, **params
        )["UserPoolClient"]
        return result

    def describe_client(self, pool_id: str, client_id: str) -> dict[str, Any] | None:
        """The client, secret included: callers keep it out of logs, events and status."""
        try:
            result: dict[str, Any] = self._c.describe_user_pool_client(
                UserPoolId=pool_id, ClientId=client_id
            )["UserPoolClient"]
        except ClientError as err:
            if is_not_found(err):
                return None
            raise
        return result

    def update_client(self, pool_id: str, client_id: str, params: dict[str, Any]) -> None:
        # UpdateUserPoolClient resets what it is not given: params always carry every field.
        self._c.update_user_pool_client(UserPoolId=pool_id, ClientId=client_id, **params)

    def delete_client(self, pool_id: str, client_id: str) -> None:
        try:
            self._c.delete_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
        except ClientError as err:
            if not is_not_found(err):
                raise

    # -- users ---------------------------------------------------------------------------
    def get_user(self, pool_id: str, username: str) -> dict[str, Any] | None:
        try:
            user: dict[str, Any] = self._c.admin_get_user(UserPoolId=pool_id, Username=username)
        except ClientError as err:
            if is_not_found(err):
                return None
            raise
        return user

    def create_user(self, pool_id: str, username: str, attributes: dict[str, str]) -> str:
        """The new user's sub. Invitation suppressed: Herd sends its own welcome email."""
        user = self._c.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()],
        )["User"]
        return str(attribute(user.get("Attributes") or [], "sub") or "")

    def create_user_if_absent(
        self, pool_id: str, username: str, attributes: dict[str, str]
    ) -> str | None:
        """The new user's sub; None when a user of that name exists already."""
        try:
            return self.create_user(pool_id, username, attributes)
        except ClientError as err:
            if code(err) == "UsernameExistsException":
                return None
            raise

    def delete_user(self, pool_id: str, username: str) -> None:
        try:
            self._c.admin_delete_user(UserPoolId=pool_id, Username=username)
        except ClientError as err:
            if not is_not_found(err):
                raise


def attribute(attributes: list[dict[str, Any]], name: str) -> str | None:
    """One of a Cognito user's attributes (`Attributes` or `UserAttributes`), if it has it."""
    return next((str(a["Value"]) for a in attributes if a.get("Name") == name), None)
