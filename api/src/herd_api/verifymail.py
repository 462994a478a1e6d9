"""The verification email of a signup: one job on the email queue, sent by the email worker.

The job goes the welcome email's way (herd_core.emailjobs: SQS, then the worker sends it
exactly once per idempotency key), with two differences: there is no Tenant yet, so it has
no `report`; and its key is the digest of the link's token, so a signup sent again within
the token's expiry step (a retry, a double click) is one email, not two.

The SES name of the template is the SESTemplate's own (`status.templateName`, once the
operator has it Ready), read by name and kept for a minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from herd_api.core.config import Settings
from herd_api.signuptokens import Pending, SignupTokens
from herd_api.tenants import digest
from herd_core import aws, kube
from herd_core import conditions as cond
from herd_core.emailjobs import EmailJob, enqueue

log = logging.getLogger("herd.api.verifymail")
SESTEMPLATES = "sestemplates"
TEMPLATE_CACHE_SECONDS = 60.0
LINK_MARK = "#verify/"  # the signup page reads the token after it (never sent to a server)


class Unavailable(Exception):
    """The email cannot be queued now (its template is not Ready, the queue refused)."""


def link(public_url: str, token: str) -> str:
    """The link of a token: the signup page, the token in the fragment. Browsers send no
    fragment to a server, so the token stays out of access logs and Referer headers; nor
    does a mail scanner that fetches the link confirm anything (the page asks for a click).
    No `=` or `&` in it: SES escapes those in a template's {{placeholders}}."""
    return f"{public_url.rstrip('/')}/{LINK_MARK}{token}"


class VerificationMail:
    def __init__(self, settings: Settings, tokens: SignupTokens) -> None:
        if not settings.email_queue_url:
            raise ValueError("HERD_EMAIL_QUEUE_URL is not set")
        self.queue_url: str = settings.email_queue_url
        self.namespace = settings.tenants_namespace
        self.template = settings.signup_verification_template
        self.public_url = settings.public_url
        self.tokens = tokens
        self._sqs: Any = aws.client("sqs", settings)
        self._lock = threading.Lock()
        self._ses_name: tuple[str, float] | None = None  # and until when it is trusted

    def ses_template(self) -> str:
        with self._lock:
            if self._ses_name and time.monotonic() < self._ses_name[1]:
                return self._ses_name[0]
        try:
            obj = kube.get_object(SESTEMPLATES, self.namespace, self.template)
        except Exception as err:
            raise Unavailable(f"SESTemplate {self.template} could not be read: {err}") from err
        status = (obj or {}).get("status") or {}
        if obj is None or not cond.is_true(status.get("conditions"), cond.READY):
            raise Unavailable(f"SESTemplate {self.namespace}/{self.template} is not Ready")
        name = str(status["templateName"])
        with self._lock:
            self._ses_name = (name, time.monotonic() + TEMPLATE_CACHE_SECONDS)
        return name

    def send(self, pending: Pending) -> str:
        """Queue the email of `pending`; its job's idempotency key. Raises Unavailable."""
        token = self.tokens.token(pending)
        expires = dt.datetime.fromtimestamp(pending.expires, dt.UTC)
        job = EmailJob(
            idempotency_key=f"signup-{digest(token)}",
            template=self.ses_template(),
            to=pending.spec["adminEmail"],
            data={
                "displayName": pending.spec["displayName"],
                "slug": pending.spec["slug"],
                "plan": pending.spec["plan"],
                "verifyURL": link(self.public_url, token),
                "expiresAt": expires.strftime("%Y-%m-%d %H:%M UTC"),
            },
            report=None,  # no Tenant to report to: there is none until the link is followed
        )
        try:
            enqueue(self._sqs, self.queue_url, job)
        except Exception as err:  # boto's errors, the network: the caller answers 503
            log.warning("verification email not queued: %s", type(err).__name__)
            raise Unavailable("the email queue refused the job") from err
        return job.idempotency_key
