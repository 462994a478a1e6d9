"""Public signup: POST creates a Tenant, GET reads its progress (for its owner).

Whether an address has signed up is nobody's business but its owner's, so nothing a caller
sees may depend on it: a signup for an email that has signed up gets the very 202 a new one
gets (nothing is created, nothing sent), and the status URL answers every caller but the
owner the same "Accepted", for a signup that made a Tenant, one that did not, or a slug never
used. The progress itself (phase, conditions) is shown to the tenant's admin (a Cognito id
token with custom:tenant = the slug: they have the password set after the welcome email,
proof they own the address) and to platform admins.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from kubernetes.client.exceptions import ApiException

from herd_api.api.deps import (
    BudgetDep,
    ClaimsDep,
    ClientDep,
    RateLimited,
    SettingsDep,
    SignupVerifierDep,
    SlugPath,
    StoreDep,
    VerifierDep,
    principal_of,
    spend_signup_budget,
    verify_signup,
)
from herd_api.claims import EMAIL, KEY, claim_name
from herd_api.core.metrics import SIGNUPS
from herd_api.core.verification import TOKEN_HEADER
from herd_api.models import PublicCondition, SignupAccepted, SignupCreate, SignupStatus
from herd_api.tenants import request_hash
from herd_core.emailjobs import mask_email

router = APIRouter(prefix="/v1/signups", tags=["signups"])
log = logging.getLogger("herd.api.signups")

CONFLICT_RESPONSES: dict[int | str, dict[str, str]] = {
    409: {"description": "The slug is already taken"},
    403: {"description": "The signup's verification (a CAPTCHA) refused it"},
    422: {"description": "Invalid input, or an Idempotency-Key reused for another request"},
    429: {"description": "Too many signups from this client, or from all clients together"},
    503: {"description": "The signup's verification could not be asked; try again"},
}
# What anyone but the owner reads at a status URL: the same for every slug.
ACCEPTED_PHASE = "Accepted"


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
    budget: BudgetDep,
    verify: SignupVerifierDep,
    client: ClientDep,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    verification_token: Annotated[str | None, Header(alias=TOKEN_HEADER, max_length=4096)] = None,
) -> SignupAccepted:
    """Accept a signup: creates the Tenant that the operator provisions.

    Every call names the objects it reads or writes (claims, the Tenant): no list of Tenants,
    so its cost is the same with 10 or 10,000 of them (herd_api.claims)."""
    # Both before anything that reads claims or Tenants: their answers are the same for
    # every well-formed signup, whatever exists. Verification first, so requests it refuses
    # (a bot's) never spend the budget of the people behind it.
    verify_signup(verify, verification_token, client)
    spend_signup_budget(budget)
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
        holder = store.get(held.slug)
        if not claims.stale(held, holder, email) or not claims.take_over(held, body.slug):
            # The same answer as a new signup: whether an address has signed up is nobody's
            # business but its owner's. Nothing is created and nothing is sent.
            existing = store.get(body.slug)
            if existing is not None and store.request_of(existing) != request:
                # A new email would get 409 for this slug: so does this one. A 202 here
                # would tell whoever picked a taken slug that the email has signed up.
                SIGNUPS.labels("conflict").inc()
                raise HTTPException(
                    status.HTTP_409_CONFLICT, detail=f"the slug '{body.slug}' is already taken"
                )
            if key_claim:
                # As a new signup's key is claimed: reusing the key for another signup is
                # then 422 either way (else a 202 would tell the email had signed up).
                # Owned by the email's Tenant, it goes with it.
                claims.create(key_claim, body.slug, request, owner=holder)
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


@router.get(
    "/{slug}",
    response_model=SignupStatus,
    responses={
        401: {"description": "A Bearer token that does not verify"},
        404: {"description": "Its owner asks, and the tenant is gone"},
    },
)
def get_signup(
    slug: SlugPath,
    store: StoreDep,
    settings: SettingsDep,
    verifier: VerifierDep,
    authorization: Annotated[str | None, Header()] = None,
) -> SignupStatus:
    """Where a signup stands. Its owner (the tenant's admin) and platform admins, with a
    Bearer id token, see the Tenant's phase and conditions; anyone else gets phase
    `Accepted` and no conditions, for every slug, signed up or not."""
    principal = None
    if authorization and authorization.lower().startswith("bearer "):
        principal = principal_of(verifier, authorization)  # a bad token: 401, for any slug
    owner = principal is not None and (
        principal.tenant == slug or settings.admin_group in principal.groups
    )
    if not owner:
        # No read at all: not even the time taken may differ between slugs.
        return SignupStatus(slug=slug, phase=ACCEPTED_PHASE, conditions=[])
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
