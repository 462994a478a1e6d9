"""The signup's verification hook: is a person behind this signup (a CAPTCHA, say)?

Called for every well-formed signup before anything is read or provisioned for it, so its
answer cannot depend on whether the email or slug exists. A verifier is any callable

    verify(token: str | None, client: str) -> bool

with `token` the request's X-Verification-Token header (what the page's CAPTCHA widget
produced) and `client` the address the rate limits key on. False refuses the signup (403);
raising `Unavailable` answers 503 (fail closed: a verifier that cannot be asked lets no one
through).

- Default: `allow_all`, no verification.
- `HERD_SIGNUP_VERIFY_URL` + `HERD_SIGNUP_VERIFY_SECRET`: `SiteVerify`, the siteverify
  protocol that Cloudflare Turnstile, hCaptcha and reCAPTCHA share (a form POST of secret,
  response and remoteip; JSON `{"success": true|false, ...}`).
- In-process code (another verifier, tests) overrides `herd_api.api.deps.get_signup_verifier`.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from herd_api.core.config import Settings

log = logging.getLogger("herd.api.verification")

SignupVerifier = Callable[[str | None, str | None], bool]  # (token, the client's IP)
TOKEN_HEADER = "X-Verification-Token"


class Unavailable(Exception):
    """The verifier could not answer; the signup is refused for now (503)."""


def allow_all(token: str | None, ip: str | None) -> bool:
    """No verification: every signup passes (the default)."""
    return True


@dataclass(frozen=True)
class SiteVerify:
    url: str
    secret: str = field(repr=False)
    timeout: float = 5.0

    def __call__(self, token: str | None, ip: str | None) -> bool:
        if not token:
            return False  # no widget answer: not worth a call
        fields = {"secret": self.secret, "response": token}
        if ip:  # optional for every such service; never the /64 the rate limit keys by
            fields["remoteip"] = ip
        form = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.url,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                verdict = json.loads(answer.read(65536))
        except (OSError, ValueError) as err:  # refused, timed out, 5xx, not JSON
            log.warning("signup verifier unavailable: %s", err)
            raise Unavailable(str(err)) from err
        if not isinstance(verdict, dict):
            raise Unavailable("the verifier's answer is not a JSON object")
        if verdict.get("success") is not True:
            log.info("signup verification refused: %s", verdict.get("error-codes", []))
            return False
        return True


def from_settings(settings: Settings) -> SignupVerifier:
    if settings.signup_verify_url and settings.signup_verify_secret:
        return SiteVerify(
            settings.signup_verify_url,
            settings.signup_verify_secret,
            settings.signup_verify_timeout,
        )
    return allow_all
