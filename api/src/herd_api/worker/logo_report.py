"""Report a logo's thumbnails (or why an upload was refused) into its Tenant's status.

One writer per field: the thumbnail worker owns `status.logo` and the `LogoRejected`
condition, by server-side apply under its own field manager (herd-thumbnails). An apply
drops what the manager owned and left out, so every apply carries the logo the Tenant
should show: a refused upload keeps the previous logo, and an older upload processed late
never replaces a newer one (`updatedAt` is the upload's time). The apply carries the
Tenant's uid: a Tenant made again under the same name gets nothing of the old one's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes.client.exceptions import ApiException

from herd_core import kube
from herd_core.constants import API_VERSION, GROUP, LOGO_REJECTED, THUMBNAIL_MANAGER, VERSION

TENANTS = "tenants"


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def body(
    tenant: dict[str, Any], logo: dict[str, str] | None, rejected: tuple[str, str] | None
) -> dict[str, Any]:
    meta = tenant["metadata"]
    condition = (
        {"type": LOGO_REJECTED, "status": "True", "reason": rejected[0], "message": rejected[1]}
        if rejected
        else {
            "type": LOGO_REJECTED,
            "status": "False",
            "reason": "Accepted",
            "message": "the latest upload became the logo",
        }
    )
    condition["lastTransitionTime"] = stamp(dt.datetime.now(dt.UTC))
    status: dict[str, Any] = {"conditions": [condition]}
    if logo:
        status["logo"] = logo
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        "status": status,
    }


def newer(candidate: dict[str, str], current: dict[str, Any] | None) -> bool:
    return not current or str(current.get("updatedAt") or "") <= candidate["updatedAt"]


def apply(
    tenant: dict[str, Any], logo: dict[str, str] | None, rejected: tuple[str, str] | None
) -> bool:
    """False when the Tenant is gone or is another one by now."""
    current = (tenant.get("status") or {}).get("logo")
    keep = logo if logo and newer(logo, current) else current
    try:
        kube.custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            tenant["metadata"]["namespace"],
            TENANTS,
            tenant["metadata"]["name"],
            body(tenant, keep, rejected),
            field_manager=THUMBNAIL_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True
