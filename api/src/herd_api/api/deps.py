"""Dependencies of the routes, as Annotated aliases: every route gets its settings, store,
verifier and limiter through these (tests override them with `app.dependency_overrides`).

The ones a signup resolves are `async def`: FastAPI runs a plain `def` dependency in its
thread pool, a hop to a thread and back for each, several per request (bench/api.py). The
objects themselves are built once (lru_cache) and only handed out here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool

from herd_api.claims import Claims
from herd_api.core import clientaddr, verification
from herd_api.core.config import Settings, get_settings
from herd_api.core.ratelimit import KeyedLimiter, TokenBucket
from herd_api.core.security import InvalidToken, Principal, Verifier
from herd_api.kubeapi import KubeApi
from herd_api.models import SLUG
from herd_api.signuptokens import SignupTokens
from herd_api.tenants import TenantStore
from herd_api.verifymail import VerificationMail

# Checked before any Kubernetes call: the API server answers 400 to some odd names.
SlugPath = Annotated[str, Path(pattern=SLUG.pattern, min_length=1, max_length=40)]


async def settings_dep() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dep)]


@lru_cache
def get_kube() -> KubeApi:
    """The process's one API-server client (after kube.load_config: create_app calls it)."""
    return KubeApi()


@lru_cache
def get_store() -> TenantStore:
    return TenantStore(get_settings().tenants_namespace, get_kube())


async def store_dep() -> TenantStore:
    return get_store()


StoreDep = Annotated[TenantStore, Depends(store_dep)]


@lru_cache
def get_claims() -> Claims:
    s = get_settings()
    return Claims(s.tenants_namespace, s.signup_claim_ttl, get_kube())


async def claims_dep() -> Claims:
    return get_claims()


ClaimsDep = Annotated[Claims, Depends(claims_dep)]


@lru_cache
def get_verifier() -> Verifier:
    s = get_settings()
    if not s.cognito_user_pool_id:
        raise RuntimeError("HERD_COGNITO_USER_POOL_ID is not set")
    if not s.admin_client_id:
        raise RuntimeError("HERD_ADMIN_CLIENT_ID is not set")
    return Verifier.for_pool(
        s.aws_region,
        s.cognito_user_pool_id,
        s.admin_client_id,
        issuer=s.jwt_issuer,
        jwks_url=s.jwks_url,
    )


@lru_cache
def get_signup_limiter() -> KeyedLimiter:
    s = get_settings()
    return KeyedLimiter(s.signup_rate, s.signup_burst, s.limiter_max_clients)


class SignupBudget:
    """What well-formed signups spend (per replica): all clients' signups together (the
    per-client request limit does nothing against a flood from many addresses), one
    client's share of them, and the verification emails one address gets."""

    def __init__(self, s: Settings) -> None:
        self.total = TokenBucket(s.signup_global_rate, s.signup_global_burst)
        self.clients = KeyedLimiter(
            s.signup_client_rate, s.signup_client_burst, s.limiter_max_clients
        )
        self.recipients = KeyedLimiter(
            s.signup_recipient_rate, s.signup_recipient_burst, s.limiter_max_clients
        )


@lru_cache
def get_signup_budget() -> SignupBudget:
    return SignupBudget(get_settings())


@lru_cache
def get_signup_verifier() -> verification.SignupVerifier:
    return verification.from_settings(get_settings())


@lru_cache
def get_signup_tokens() -> SignupTokens | None:
    """The verification links' signer; None without a key (then no link verifies)."""
    s = get_settings()
    if s.signup_token_key is None:
        return None
    return SignupTokens(s.signup_token_key.get_secret_value(), s.signup_token_ttl)


@lru_cache
def get_verification_mail() -> VerificationMail | None:
    """The verification email's sender while email verification is on; else None."""
    s, tokens = get_settings(), get_signup_tokens()
    if not s.signup_email_verification or tokens is None:
        return None
    return VerificationMail(s, tokens)


async def client_address(request: Request, settings: SettingsDep) -> str:
    return clientaddr.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )


async def client_ip(request: Request, settings: SettingsDep) -> str | None:
    return clientaddr.client_ip(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )


async def limiter_dep() -> KeyedLimiter:
    return get_signup_limiter()


async def budget_dep() -> SignupBudget:
    return get_signup_budget()


async def signup_verifier_dep() -> verification.SignupVerifier:
    return get_signup_verifier()


async def tokens_dep() -> SignupTokens | None:
    return get_signup_tokens()


async def verification_mail_dep() -> VerificationMail | None:
    return get_verification_mail()


VerifierDep = Annotated[Verifier, Depends(get_verifier)]
LimiterDep = Annotated[KeyedLimiter, Depends(limiter_dep)]
BudgetDep = Annotated[SignupBudget, Depends(budget_dep)]
SignupVerifierDep = Annotated[verification.SignupVerifier, Depends(signup_verifier_dep)]
TokensDep = Annotated[SignupTokens | None, Depends(tokens_dep)]
VerificationMailDep = Annotated[VerificationMail | None, Depends(verification_mail_dep)]
ClientDep = Annotated[str, Depends(client_address)]
ClientIPDep = Annotated[str | None, Depends(client_ip)]


async def rate_limited(request: Request, client: ClientDep, limiter: LimiterDep) -> None:
    # In memory, under a lock held for microseconds: fine on the loop.
    wait = limiter.check(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many requests; try again shortly",
            headers={"Retry-After": str(max(1, round(wait)))},
        )


def spend_signup_budget(budget: SignupBudget, client: str) -> None:
    """One signup from its client's share, then from the budget of all clients: 429 when
    either is spent. Called by the route for a well-formed signup only (the per-client
    request limit counts every request), before anything that depends on the email, so the
    answer says nothing about it. The client's share first: a client past it spends nothing
    of everyone else's."""
    wait = budget.clients.check(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many signups from this client; try again later",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    wait = budget.total.try_take()
    if wait:
        budget.clients.refund(client)  # refused for all: this client's share is not spent
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="signups are paused: too many from all clients together; try again later",
            headers={"Retry-After": str(max(1, round(wait)))},
        )


async def verify_signup(
    verify: verification.SignupVerifier, token: str | None, ip: str | None
) -> None:
    """The verification hook (herd_api.core.verification): 403 refused, 503 unavailable.
    A CAPTCHA service is asked from a thread (a blocking HTTP call); none configured, no hop.
    `ip` is the client's own address (not its rate-limit key: an IPv6 client's is its /64)."""
    try:
        if verify is verification.allow_all:
            passed = True
        else:
            passed = await run_in_threadpool(verify, token, ip)
    except verification.Unavailable as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="signup verification is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        ) from err
    if not passed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="signup verification failed")


def signed_in(
    verifier: VerifierDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """Any user of the pool signed in through the admin app client."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a Bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal_of(verifier, authorization)


def principal_of(verifier: Verifier, authorization: str) -> Principal:
    """The user of a `Bearer` Authorization header; 401 for a token that does not verify."""
    try:
        principal = verifier.verify(authorization[7:].strip())
    except InvalidToken as err:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"invalid token: {err}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from err
    return principal


def admin(settings: SettingsDep, principal: Annotated[Principal, Depends(signed_in)]) -> Principal:
    if settings.admin_group not in principal.groups:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"requires membership of the {settings.admin_group} group",
        )
    return principal


def is_tenant_admin(principal: Principal, tenant: Mapping[str, Any] | None) -> bool:
    """Whether `principal` is the admin of `tenant`: the user the operator made for it, by
    the Cognito sub it recorded in the Tenant's status (which no user can write). Never the
    token's custom:tenant: a user may write that on themselves where an app client lets them."""
    admin_sub = ((tenant or {}).get("status") or {}).get("adminSub")
    return bool(admin_sub) and principal.sub == admin_sub


@dataclass(frozen=True)
class TenantAccess:
    """Who acts on a tenant, and the Tenant as read for the check (None: there is none, and
    only a platform admin gets this far)."""

    principal: Principal
    tenant: dict[str, Any] | None


async def tenant_admin(
    slug: SlugPath,
    settings: SettingsDep,
    store: StoreDep,
    principal: Annotated[Principal, Depends(signed_in)],
) -> TenantAccess:
    """The admin of tenant `slug` (the Tenant's status.adminSub) or a platform admin."""
    tenant = await store.get(slug)
    if settings.admin_group not in principal.groups and not is_tenant_admin(principal, tenant):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"only the admin of tenant '{slug}' or a platform admin may do this",
        )
    return TenantAccess(principal, tenant)


AdminDep = Annotated[Principal, Depends(admin)]
TenantAdminDep = Annotated[TenantAccess, Depends(tenant_admin)]
RateLimited = Depends(rate_limited)
