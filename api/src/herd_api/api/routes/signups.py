"""Public signup: POST creates a Tenant, GET reads its progress."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from kubernetes.client.exceptions import ApiException

from herd_api.api.deps import ClaimsDep, RateLimited, SettingsDep, SlugPath, StoreDep
from herd_api.claims import EMAIL, KEY, claim_name
from herd_api.core.metrics import SIGNUPS
from herd_api.models import PublicCondition, SignupAccepted, SignupCreate, SignupStatus
from herd_api.tenants import request_hash
from herd_core.emailjobs import mask_email

router = APIRouter(prefix="/v1/signups", tags=["signups"])
log = logging.getLogger("herd.api.signups")

CONFLICT_RESPONSES: dict[int | str, dict[str, str]] = {
    409: {"description": "The slug is already taken"},
    422: {"description": "Invalid input, or an Idempotency-Key reused for another request"},
    429: {"description": "Too many signups from this client"},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignupAccepted,
    responses=CONFLICT_RESPONSES,
    dependencies=[RateLimited],
)
def create_signup(
    body: SignupCreate,
    store: StoreDep,
    claims: ClaimsDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> SignupAccepted:
    """Accept a signup: creates the Tenant that the operator provisions.

    Every call names the objects it reads or writes (claims, the Tenant): no list of Tenants,
    so its cost is the same with 10 or 10,000 of them (herd_api.claims)."""
    spec = body.model_dump()
    spec["adminEmail"] = email = spec["adminEmail"].lower()
    request = request_hash(spec)
    accepted = SignupAccepted(
        slug=body.slug, status=f"{settings.public_url.rstrip('/')}/v1/signups/{body.slug}"
    )
    key_claim = claim_name(KEY, idempotency_key) if idempotency_key else None
    if key_claim:
        earlier = claims.get(key_claim)
        if earlier is not None:
            if earlier.request != request:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    detail="Idempotency-Key was already used for a different signup",
                )
            SIGNUPS.labels("replayed").inc()
            return SignupAccepted(slug=earlier.slug, status=accepted.status)
    email_claim = claim_name(EMAIL, email)
    held = claims.create(email_claim, body.slug)
    made = held is None
    if held is not None and held.slug != body.slug:
        if not claims.stale(held, store.get(held.slug), email) or not claims.take_over(
            held, body.slug
        ):
            # The same answer as a new signup: whether an address has signed up is nobody's
            # business but its owner's. Nothing is created and nothing is sent.
            SIGNUPS.labels("duplicate_email").inc()
            log.info("signup for an email that has signed up; answered as accepted")
            return accepted
        made = True
    # This signup holds the email: the Tenant is created at most once for it.
    try:
        tenant = store.create(spec, idempotency_key)
    except ApiException as err:
        existing = store.get(body.slug) if err.status == 409 else None
        if existing is not None and store.request_of(existing) == request:
            tenant = existing  # this very signup, retried after its answer was lost
        else:
            if made:  # a claim this request made; one that was there before stays
                claims.release(email_claim, body.slug)
            if err.status == 409:  # the slug is someone else's
                SIGNUPS.labels("conflict").inc()
                raise HTTPException(
                    status.HTTP_409_CONFLICT, detail=f"the slug '{body.slug}' is already taken"
                ) from err
            if err.status == 422:  # the CRD schema refused what pydantic let through
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    detail=f"rejected by the platform: {err.reason}",
                ) from err
            raise
    claims.own_later(email_claim, tenant)
    if key_claim:
        claims.create(key_claim, body.slug, request, owner=tenant)
    SIGNUPS.labels("accepted").inc()
    log.info(
        "signup accepted",
        extra={"slug": body.slug, "plan": body.plan, "admin": mask_email(spec["adminEmail"])},
    )
    return accepted


@router.get("/{slug}", response_model=SignupStatus, responses={404: {"description": "Unknown"}})
def get_signup(slug: SlugPath, store: StoreDep) -> SignupStatus:
    """Where a signup stands: the Tenant's phase and conditions."""
    obj = store.get(slug)
    if obj is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no signup '{slug}'")
    st = obj.get("status") or {}
    return SignupStatus(
        slug=slug,
        phase=st.get("phase") or "Pending",
        conditions=[
            PublicCondition(
                type=c.get("type", ""), status=c.get("status", ""), reason=c.get("reason")
            )
            for c in st.get("conditions") or []
        ],
    )
