"""A tenant's logo: a presigned upload for its admin (or a platform admin)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status

from herd_api import uploads
from herd_api.api.deps import RateLimited, SettingsDep, SlugPath, TenantAdminDep
from herd_api.models import LogoUpload, LogoUploadCreate

router = APIRouter(prefix="/v1/tenants", tags=["logos"])
log = logging.getLogger("herd.api.logos")


@router.post(
    "/{slug}/logo-uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=LogoUpload,
    # Each answer lets a browser put up to 2 MiB into S3: limited per client like signups.
    dependencies=[RateLimited],
    responses={
        401: {"description": "No or invalid token"},
        403: {"description": "Neither this tenant's admin nor a platform admin"},
        404: {"description": "Unknown tenant"},
        422: {"description": "A content type other than PNG, JPEG or WebP"},
        429: {"description": "Too many uploads from this client"},
    },
)
def create_logo_upload(
    slug: SlugPath,
    body: LogoUploadCreate,
    settings: SettingsDep,
    access: TenantAdminDep,
) -> LogoUpload:
    """A presigned POST for one logo file: POST `fields` plus the file (as `file`, last) to
    `url` as multipart/form-data within `expiresAt`. S3 refuses another key, content type or
    a file over `maxBytes`; the thumbnail worker then makes the logo's thumbnails."""
    if access.tenant is None:  # as read by the tenant-admin check
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no tenant '{slug}'")
    if not settings.logo_raw_bucket:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="logo uploads are not configured"
        )
    post = uploads.presign(settings, slug, body.contentType)
    log.info("logo upload presigned", extra={"slug": slug, "by": access.principal.username})
    return LogoUpload(
        url=post.url,
        fields=post.fields,
        key=post.key,
        expiresAt=post.expires_at,
        maxBytes=settings.logo_max_bytes,
        contentType=body.contentType,
    )
