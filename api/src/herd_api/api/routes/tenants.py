"""Admin: list and delete tenants (Cognito `admins` group only)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from herd_api.api.deps import AdminDep, SlugPath, StoreDep
from herd_api.models import Phase, TenantDetail, TenantList, tenant_detail, tenant_public

router = APIRouter(prefix="/v1/tenants", tags=["admin"])
log = logging.getLogger("herd.api.tenants")
AUTH_RESPONSES: dict[int | str, dict[str, str]] = {
    401: {"description": "No or invalid token"},
    403: {"description": "Not an admin"},
}


@router.get("", response_model=TenantList, response_model_by_alias=True, responses=AUTH_RESPONSES)
async def list_tenants(
    store: StoreDep,
    principal: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    continue_: Annotated[str | None, Query(alias="continue", max_length=4096)] = None,
    phase: Phase | None = None,
) -> TenantList:
    """A page of tenants, optionally of one phase; follow `continue` (with the same phase)
    for the next one."""
    try:
        items, token = await store.list(limit, continue_, phase)
    except Exception as err:
        if getattr(err, "status", None) in (400, 410, 422):  # an expired or bad token
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail="invalid or expired continue token"
            ) from err
        raise
    return TenantList(items=[tenant_public(o) for o in items], continue_=token)


@router.get(
    "/{slug}",
    response_model=TenantDetail,
    responses={**AUTH_RESPONSES, 404: {"description": "Unknown tenant"}},
)
async def get_tenant(slug: SlugPath, store: StoreDep, principal: AdminDep) -> TenantDetail:
    """One tenant with its conditions (messages included) and its recent Events."""
    obj = await store.get(slug)
    if obj is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no tenant '{slug}'")
    return tenant_detail(obj, await store.events(slug))


@router.delete(
    "/{slug}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**AUTH_RESPONSES, 404: {"description": "Unknown tenant"}},
)
async def delete_tenant(slug: SlugPath, store: StoreDep, principal: AdminDep) -> dict[str, str]:
    """Start the deletion of a tenant (identity, app client, realm go with it)."""
    if not await store.delete(slug):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no tenant '{slug}'")
    log.info("tenant deletion requested", extra={"slug": slug, "by": principal.username})
    return {"slug": slug, "status": "deleting"}
