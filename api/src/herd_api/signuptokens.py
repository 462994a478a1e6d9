"""The signed tokens of verification links: a signup, held in the link itself (N9).

A signup with email verification on makes nothing: its fields go into a token, HMAC-SHA256
signed with HERD_SIGNUP_TOKEN_KEY and carried by the link emailed to its adminEmail. The
link's token is all that the verification needs, so the API keeps no state for a signup
nobody confirms. Its form:

    v1.<base64url(JSON {"e": expiry, "k": Idempotency-Key or null, "s": the signup})>.<mac>

The MAC covers the version and the encoded payload exactly as sent (nothing re-serialized).
The token is not secret from its holder (the payload is readable: it is their own signup) but
cannot be made or changed without the key. The expiry is rounded up to a step, so the same
signup asked twice within a step gets the very same token (and one email: the job's key is
the token's digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from herd_api.models import SignupCreate

VERSION = "v1"
STEP = 600  # seconds an expiry is rounded up to
MAX_LENGTH = 4096  # a token's characters; a signup with the longest key is about 1.2 KB


class InvalidToken(Exception):
    """Not a token of ours: malformed, or its MAC does not verify (forged or changed)."""


class ExpiredToken(Exception):
    """A token of ours, past its expiry."""


@dataclass(frozen=True)
class Pending:
    """A signup waiting for its link: what the token carries."""

    spec: dict[str, str]  # displayName, slug, adminEmail (lower case), plan
    idempotency_key: str | None
    expires: int  # epoch seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignupTokens:
    def __init__(self, key: str, ttl: int) -> None:
        if len(key) < 32:
            raise ValueError("the signup token key needs at least 32 characters")
        self._key = key.encode()
        self.ttl = ttl

    @property
    def step(self) -> int:
        """What expiries are rounded up to."""
        return min(STEP, self.ttl)

    def __repr__(self) -> str:  # never the key
        return f"SignupTokens(ttl={self.ttl})"

    def _mac(self, payload: str) -> str:
        signed = f"herd-signup.{VERSION}.{payload}".encode()  # bound to its use and version
        return _b64(hmac.new(self._key, signed, hashlib.sha256).digest())

    def issue(
        self, spec: dict[str, Any], idempotency_key: str | None, now: float | None = None
    ) -> Pending:
        now = time.time() if now is None else now
        expires = math.ceil((now + self.ttl) / self.step) * self.step
        fields = {k: str(spec[k]) for k in ("displayName", "slug", "adminEmail", "plan")}
        return Pending(fields, idempotency_key, int(expires))

    def token(self, pending: Pending) -> str:
        body = {"e": pending.expires, "k": pending.idempotency_key, "s": pending.spec}
        payload = _b64(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        return f"{VERSION}.{payload}.{self._mac(payload)}"

    def read(self, token: str, now: float | None = None) -> Pending:
        """The signup of a token; InvalidToken unless its MAC verifies, ExpiredToken after
        its expiry (checked only once the MAC has)."""
        if len(token) > MAX_LENGTH:
            raise InvalidToken("too long")
        version, _, rest = token.partition(".")
        payload, _, mac = rest.partition(".")
        if version != VERSION or not payload or not mac:
            raise InvalidToken("not a signup token")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidToken("signature does not verify")
        try:
            body = json.loads(_unb64(payload))
            # Ours, so well-formed; checked anyway with the signup's own rules.
            spec = SignupCreate.model_validate(body["s"]).model_dump()
            expires, key = int(body["e"]), body["k"]
        except (ValueError, KeyError, TypeError, binascii.Error, ValidationError) as err:
            raise InvalidToken("payload does not parse") from err
        if key is not None and not isinstance(key, str):
            raise InvalidToken("payload does not parse")
        spec["adminEmail"] = spec["adminEmail"].lower()
        if (time.time() if now is None else now) >= expires:
            raise ExpiredToken(f"expired at {expires}")
        return Pending(spec, key, expires)
