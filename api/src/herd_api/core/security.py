"""Cognito JWTs: signature against the pool's JWKS, issuer, client and expiry.

Issuer and JWKS URL are separate settings: tokens from moto carry the real AWS issuer while
moto serves the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt

from herd_core.aws import issuer_url


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    username: str
    groups: tuple[str, ...]
    # The user's custom:tenant attribute (id tokens only). Informational, never authority:
    # wherever an app client lets users write it, a user may set it on themselves. Whose
    # admin a user is, the Tenant says (status.adminSub, herd_api.api.deps.tenant_admin).
    tenant: str | None = None
    # The user's Cognito sub: unique, never reused, and no user can change it.
    sub: str | None = None


@dataclass
class Verifier:
    issuer: str
    jwks_url: str
    client_id: str

    @classmethod
    def for_pool(
        cls,
        region: str,
        pool_id: str,
        client_id: str,
        issuer: str | None = None,
        jwks_url: str | None = None,
    ) -> Verifier:
        iss = issuer or issuer_url(region, pool_id)
        return cls(
            issuer=iss, jwks_url=jwks_url or f"{iss}/.well-known/jwks.json", client_id=client_id
        )

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient:
        return jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=3600)

    def verify(self, token: str) -> Principal:
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"require": ["exp", "iss", "token_use"], "verify_aud": False},
            )
        except jwt.PyJWTError as err:
            raise InvalidToken(str(err)) from err
        use = claims.get("token_use")
        # Id tokens name the app client in `aud`, access tokens in `client_id`.
        client = claims.get("aud") if use == "id" else claims.get("client_id")
        if use not in ("id", "access"):
            raise InvalidToken("not a Cognito id or access token")
        if not self.client_id or client != self.client_id:
            raise InvalidToken("token was issued to another app client")
        return Principal(
            username=str(
                claims.get("cognito:username") or claims.get("username") or claims.get("sub")
            ),
            groups=tuple(claims.get("cognito:groups") or ()),
            tenant=(str(claims["custom:tenant"]) if claims.get("custom:tenant") else None)
            if use == "id"
            else None,
            sub=str(claims["sub"]) if claims.get("sub") else None,
        )
