"""How much of a resource quota (herd_core.quotas) is in use, read from AWS: list calls a
page at a time (each paced like any other call), so reading one quota's use costs at most
`used / page` calls."""

from __future__ import annotations

from typing import Any


def app_clients(idp: Any, pool_id: str) -> int:
    """App clients in a user pool (ListUserPoolClients, 60 a page)."""
    kwargs: dict[str, Any] = {"UserPoolId": pool_id, "MaxResults": 60}
    count = 0
    while True:
        page = idp.list_user_pool_clients(**kwargs)
        count += len(page.get("UserPoolClients", []))
        if not page.get("NextToken"):
            return count
        kwargs["NextToken"] = page["NextToken"]


def user_pools(idp: Any) -> int:
    """User pools in the account's Region (ListUserPools, 60 a page)."""
    kwargs: dict[str, Any] = {"MaxResults": 60}
    count = 0
    while True:
        page = idp.list_user_pools(**kwargs)
        count += len(page.get("UserPools", []))
        if not page.get("NextToken"):
            return count
        kwargs["NextToken"] = page["NextToken"]


def templates(ses: Any) -> int:
    """SES templates in the account's Region (ListTemplates, 100 a page)."""
    kwargs: dict[str, Any] = {"MaxItems": 100}
    count = 0
    while True:
        page = ses.list_templates(**kwargs)
        count += len(page.get("TemplatesMetadata", []))
        if not page.get("NextToken"):
            return count
        kwargs["NextToken"] = page["NextToken"]


def identities(ses: Any) -> list[str]:
    """SES identities (addresses and domains) of the account's Region, verified or not."""
    kwargs: dict[str, Any] = {"MaxItems": 1000}
    found: list[str] = []
    while True:
        page = ses.list_identities(**kwargs)
        found += page.get("Identities", [])
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def used(client: Any, key: str, params: dict[str, Any]) -> tuple[int, str] | None:
    """(in use, where) of the resource quota `key` a call with `params` ran into; None when
    it cannot be read from the call's own scope."""
    if key == "cognito.app_clients_per_user_pool" and params.get("UserPoolId"):
        pool = str(params["UserPoolId"])
        return app_clients(client, pool), f"in user pool {pool}"
    if key == "cognito.user_pools_per_region":
        return user_pools(client), f"in {client.meta.region_name}"
    if key == "ses.templates_per_region":
        return templates(client), f"in {client.meta.region_name}"
    return None
