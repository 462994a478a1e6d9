"""Public signup: POST asks for a Tenant, its verification link makes it, GET reads its
progress (for its owner).

N9: with email verification on (the default), a signup makes nothing: it is checked as
always (rate limits, the verification hook, the budget, a taken slug) and sends one email to
its adminEmail, whose link carries the signup in a signed, expiring token
(herd_api.signuptokens). Following the link (POST /v1/signups/verify, from the signup page)
makes the Tenant exactly as a signup without verification does at once; a second time finds
that Tenant and answers the same. Until then nothing exists for it, in Kubernetes or AWS,
but that one email.

Whether an address has signed up is nobody's business but its owner's, so nothing a caller
sees may depend on it: a signup for an email that has signed up gets the very 202 a new one
gets (with verification on, its email too: the link then says the address has a tenant),
and the status URL answers every caller but the owner the same "Accepted", for a signup
that made a Tenant, one that did not, or a slug never used. The progress itself (phase,
conditions) is shown to the tenant's admin (the Cognito user whose sub the operator recorded
in the Tenant's status.adminSub: they have the password set after the welcome email, proof
they own the address) and to platform admins.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from kubernetes.client.exceptions import ApiException

from herd_api.api.deps import (
    BudgetDep,
    ClaimsDep,
    ClientDep,
    ClientIPDep,
    RateLimited,
    SettingsDep,
    SignupVerifierDep,
    SlugPath,
    StoreDep,
    TokensDep,
    VerificationMailDep,
    VerifierDep,
    is_tenant_admin,
    principal_of,
    spend_signup_budget,
    verify_signup,
)
from herd_api.claims import EMAIL, KEY, Claims, claim_name
from herd_api.core.metrics import SIGNUPS
from herd_api.core.verification import TOKEN_HEADER
from herd_api.models import (
    PublicCondition,
    SignupAccepted,
    SignupCreate,
    SignupStatus,
    SignupVerify,
)
from herd_api.signuptokens import ExpiredToken, InvalidToken
from herd_api.tenants import TenantStore, digest, request_hash
from herd_api.verifymail import Unavailable
from herd_core.emailjobs import mask_email

router = APIRouter(prefix="/v1/signups", tags=["signups"])
log = logging.getLogger("herd.api.signups")

CONFLICT_RESPONSES: dict[int | str, dict[str, str]] = {
    409: {"description": "The slug is already taken"},
    403: {"description": "The signup's verification (a CAPTCHA) refused it"},
    422: {"description": "Invalid input, or an Idempotency-Key reused for another request"},
    429: {"description": "Too many signups from this client, or from all clients together"},
    503: {
        "description": "The signup's verification could not be asked, or its verification "
        "email not queued; try again"
    },
}
VERIFY_RESPONSES: dict[int | str, dict[str, str]] = {
    400: {"description": "Not a verification link of ours (malformed, forged or changed)"},
    404: {"description": "Email verification is not configured"},
    409: {"description": "The slug was taken meanwhile, or the address has a tenant"},
    410: {"description": "The link has expired, or made a Tenant since deleted: sign up again"},
    429: {"description": "Too many requests from this client"},
}
# What anyone but the owner reads at a status URL: the same for every slug.
ACCEPTED_PHASE = "Accepted"


def slug_taken(slug: str) -> HTTPException:
    SIGNUPS.labels("conflict").inc()
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"the slug '{slug}' is already taken")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignupAccepted,
    response_model_exclude_none=True,
    responses=CONFLICT_RESPONSES,
    dependencies=[RateLimited],
)
async def create_signup(
    body: SignupCreate,
    store: StoreDep,
    claims: ClaimsDep,
    settings: SettingsDep,
    budget: BudgetDep,
    verify: SignupVerifierDep,
    client: ClientDep,
    ip: ClientIPDep,
    mail: VerificationMailDep,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    verification_token: Annotated[str | None, Header(alias=TOKEN_HEADER, max_length=4096)] = None,
) -> SignupAccepted:
    """Accept a signup: with email verification on, send the email whose link makes the
    Tenant; off, create the Tenant that the operator provisions.

    Every call names the objects it reads or writes (claims, the Tenant): no list of Tenants,
    so its cost is the same with 10 or 10,000 of them (herd_api.claims)."""
    # Both before anything that reads claims or Tenants: their answers are the same for
    # every well-formed signup, whatever exists. Verification first, so requests it refuses
    # (a bot's) never spend the budget of the people behind it.
    await verify_signup(verify, verification_token, ip)
    spend_signup_budget(budget, client)
    spec = body.model_dump()
    spec["adminEmail"] = spec["adminEmail"].lower()
    request = request_hash(spec)
    accepted = SignupAccepted(
        slug=body.slug,
        status=f"{settings.public_url.rstrip('/')}/v1/signups/{body.slug}",
        verifyEmail=True if mail is not None else None,
    )
    key_claim = claim_name(KEY, idempotency_key) if idempotency_key else None
    if key_claim:
        earlier = await claims.get(key_claim)
        if earlier is not None:
            if earlier.request != request:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    detail="Idempotency-Key was already used for a different signup",
                )
            SIGNUPS.labels("replayed").inc()
            return accepted
    if mail is None:
        await provision(store, claims, spec, request, idempotency_key, key_claim)
        return accepted  # made, or (the email has a tenant) nothing made: the same answer
    # Held for its link. Nothing here reads the email's claim: the answer and the time it
    # takes are the same for any address (a known one gets its email as a new one does).
    existing = await store.get(body.slug)
    if existing is not None:
        if not store.made_by(existing, request, idempotency_key):
            raise slug_taken(body.slug)  # for any admin email: the slug is taken
        SIGNUPS.labels("replayed").inc()  # this very signup (its key), verified already
        return accepted
    recipient = digest(spec["adminEmail"])
    if budget.recipients.check(recipient):
        # Answered as any signup (the caller learns nothing), but its address has had its
        # emails for now: the form cannot be used to flood one mailbox.
        SIGNUPS.labels("recipient_capped").inc()
        log.warning(
            "signup's verification email not sent: its address had its share",
            extra={"slug": body.slug, "admin": mask_email(spec["adminEmail"])},
        )
        return accepted
    try:
        # SQS through boto3 (blocking), from a thread; only with verification on.
        await run_in_threadpool(mail.send, mail.tokens.issue(spec, idempotency_key))
    except Unavailable as err:
        budget.recipients.refund(recipient)  # nothing was sent: the address's share stays
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="signups are unavailable for a moment; try again shortly",
            headers={"Retry-After": "5"},
        ) from err
    SIGNUPS.labels("held").inc()
    log.info(
        "signup held for email verification",
        extra={"slug": body.slug, "plan": body.plan, "admin": mask_email(spec["adminEmail"])},
    )
    return accepted


@router.post(
    "/verify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignupAccepted,
    response_model_exclude_none=True,
    responses=VERIFY_RESPONSES,
    dependencies=[RateLimited],
)
async def verify_signup_email(
    body: SignupVerify,
    store: StoreDep,
    claims: ClaimsDep,
    settings: SettingsDep,
    tokens: TokensDep,
) -> SignupAccepted:
    """Follow a signup's verification link (the signup page posts its token): the signup it
    carries becomes a Tenant, as a signup without verification does at once. Again (a second
    click), the Tenant the first made is found and the answer is the same."""
    if tokens is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="email verification is off")
    try:
        pending = tokens.read(body.token)
    except ExpiredToken as err:
        raise HTTPException(
            status.HTTP_410_GONE, detail="this verification link has expired: sign up again"
        ) from err
    except InvalidToken as err:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="this verification link is not valid"
        ) from err
    spec, key = pending.spec, pending.idempotency_key
    request = request_hash(spec)
    accepted = SignupAccepted(
        slug=spec["slug"], status=f"{settings.public_url.rstrip('/')}/v1/signups/{spec['slug']}"
    )
    made = await claims.links.made(body.token, pending.expires)
    if made is not None:
        tenant = await store.get(made)
        if tenant is None or store.request_of(tenant) != request:
            # Its Tenant was deleted (by an admin, say): a link makes a Tenant once.
            raise HTTPException(
                status.HTTP_410_GONE,
                detail="this verification link has been used already: sign up again",
            )
        return accepted  # a second click: the Tenant the first made
    key_claim = claim_name(KEY, key) if key else None
    if not await provision(store, claims, spec, request, key, key_claim, linked=True):
        # Only the address's owner holds its link: telling them is telling nobody else.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="this address has signed up already: sign in to its tenant",
        )
    # After the Tenant: a link whose use was not recorded (the API died in between) finds
    # its Tenant the next time, as a second click does, and is recorded then.
    await claims.links.use(body.token, pending.expires, spec["slug"])
    claims.links.sweep_later(time.time(), tokens.step, tokens.ttl)
    return accepted


async def provision(
    store: TenantStore,
    claims: Claims,
    spec: dict[str, Any],
    request: str,
    idempotency_key: str | None,
    key_claim: str | None,
    linked: bool = False,
) -> bool:
    """Create the Tenant of a signup: at once, or when its link is followed (`linked`).
    True when it is made (or was, by this very signup); False when the email holds another
    Tenant and nothing is made. 409 when the slug is someone else's, 422 when the CRD
    refuses."""
    slug, email = spec["slug"], spec["adminEmail"]

    def ours(tenant: dict[str, Any]) -> bool:
        """Made by this very signup: proven by its link (only the address's owner holds it)
        or its Idempotency-Key, never by its fields alone (a guessed admin email would match
        them: 202 against 409 told whether the guess was right)."""
        if linked:
            return store.request_of(tenant) == request
        return store.made_by(tenant, request, idempotency_key)

    email_claim = claim_name(EMAIL, email)
    held = await claims.create(email_claim, slug)
    made = held is None
    if held is not None and held.slug != slug:
        holder = await store.get(held.slug)
        if not claims.stale(held, holder, email) or not await claims.take_over(held, slug):
            # The same answer as a new signup: whether an address has signed up is nobody's
            # business but its owner's. Nothing is created and nothing is sent.
            existing = await store.get(slug)
            if existing is not None and not ours(existing):
                # A new email would get 409 for this slug: so does this one. A 202 here
                # would tell whoever picked a taken slug that the email has signed up.
                raise slug_taken(slug)
            if key_claim:
                # As a new signup's key is claimed: reusing the key for another signup is
                # then 422 either way (else a 202 would tell the email had signed up).
                # Owned by the email's Tenant, it goes with it.
                await claims.create(key_claim, slug, request, owner=holder)
            SIGNUPS.labels("duplicate_email").inc()
            log.info("signup for an email that has signed up; answered as accepted")
            return False
        made = True
    # This signup holds the email: the Tenant is created at most once for it.
    try:
        tenant = await store.create(spec, idempotency_key)
    except ApiException as err:
        existing = await store.get(slug) if err.status == 409 else None
        if existing is not None and ours(existing):
            tenant = existing  # this very signup, retried after its answer was lost
        else:
            if made:  # a claim this request made; one that was there before stays
                await claims.release(email_claim, slug)
            if err.status == 409:  # the slug is someone else's
                raise slug_taken(slug) from err
            if err.status == 422:  # the CRD schema refused what pydantic let through
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    detail=f"rejected by the platform: {err.reason}",
                ) from err
            raise
    claims.own_later(email_claim, tenant)
    if key_claim:
        await claims.create(key_claim, slug, request, owner=tenant)
    SIGNUPS.labels("accepted").inc()
    log.info(
        "signup accepted",
        extra={"slug": slug, "plan": spec["plan"], "admin": mask_email(email)},
    )
    return True


@router.get(
    "/{slug}",
    response_model=SignupStatus,
    responses={
        401: {"description": "A Bearer token that does not verify"},
        404: {"description": "Its owner asks, and the tenant is gone"},
    },
)
async def get_signup(
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
        # A bad token: 401, for any slug. From a thread: the keys may be fetched (JWKS).
        principal = await run_in_threadpool(principal_of, verifier, authorization)
    if principal is None:
        # No read at all: not even the time taken may differ between slugs.
        return SignupStatus(slug=slug, phase=ACCEPTED_PHASE, conditions=[])
    obj = await store.get(slug)
    # The owner is the Tenant's admin by the sub the operator recorded, never by the token's
    # custom:tenant (a user may have written that on themselves).
    if settings.admin_group not in principal.groups and not is_tenant_admin(principal, obj):
        return SignupStatus(slug=slug, phase=ACCEPTED_PHASE, conditions=[])
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
