"""AWS's quotas and request rates (herd_core.quotas), enforced in front of moto, which
enforces none: a local platform that never says "no" proves nothing about a burst of
signups. WSGI middleware for moto_serial, answering as AWS answers:

- **resource counts**: the pool's app clients, the Region's user pools, SES templates; one
  more is refused with Cognito's `LimitExceededException` or SES's `LimitExceeded`;
- **Cognito request rates**: a token bucket per category per account and Region, and per
  operation and user pool where Cognito also counts per pool (5 a second); over it:
  `TooManyRequestsException` "Rate exceeded";
- **SES**: every action but the sends at one a second each (`Throttling` "Rate exceeded");
  sends by the sending rate and the rolling 24-hour sending quota, per recipient
  (`Throttling` "Maximum sending rate exceeded." / "Daily message quota exceeded."); in the
  sandbox (HERD_LOCAL_SES_SANDBOX) only to verified identities (`MessageRejected`), and
  GetSendQuota / SESv2 GetAccount answer the quotas enforced here.

Figures are herd_core.quotas' defaults, lowered or raised by HERD_AWS_QUOTAS (read once, at
start), so a test of the app-client limit needs 3 clients, not 1,000. Out of the SES
sandbox AWS sets the sending quota per account and publishes no default: locally it is
PRODUCTION_SEND_QUOTA a day at PRODUCTION_SEND_RATE a second, the starting quota AWS used to
grant with production access. A token bucket holds one second of its rate: AWS publishes
no burst.

Rates are checked as a request arrives, before moto's lock (`rated`); counts and sends read
moto's state, so under it (`counted`). Every refusal is counted by service, operation, code
and what was reached (rate, count, daily or sandbox): `GET /_herd/refusals` answers the
counts (a bench's "throttles the operator saw"). `POST /_herd/sandbox` `{"sandbox": bool,
"quotas": {...}}` moves the account into or out of the SES sandbox while it runs, as AWS's
grant of production access does, and (given) replaces HERD_AWS_QUOTAS' figures; it answers
the state before, to restore (a test of the sandbox on a running stack).
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from moto.cognitoidp.models import cognitoidp_backends
from moto.iam.models import get_account_id_from
from moto.ses.models import ses_backends

from herd_core import quotas
from herd_core.quotas import QUOTAS
from herd_devkit.local.aws_rules import Answer

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
COGNITO = "AWSCognitoIdentityProviderService."
CLOUDWATCH = "GraniteServiceVersion20100801."  # botocore speaks its JSON protocol
SES_XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
PRODUCTION_SEND_QUOTA = 50_000.0
PRODUCTION_SEND_RATE = 14.0
SIMULATOR = "@simulator.amazonses.com"  # SES's mailbox simulator: allowed in the sandbox
DAY = 86_400.0
REFUSALS_PATH = "/_herd/refusals"
SANDBOX_PATH = "/_herd/sandbox"
_accounts: dict[str, str] = {}  # access key id -> moto's account (the default one for any key)


class Bucket:
    """A token bucket of `rate` tokens a second holding at most one second of them."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def available(self, now: float, need: float = 1.0) -> bool:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        return self.tokens >= min(need, self.capacity)

    def take(self, need: float = 1.0) -> None:
        self.tokens -= min(need, self.capacity)


class Request:
    """What the front needs of a request: who (account, Region), which call, its input."""

    def __init__(self, environ: dict[str, Any], default_region: str) -> None:
        self.environ = environ
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if auth else []
        self.key_id = scope[0] if scope else ""
        self.region = scope[2] if len(scope) > 2 else default_region
        self.signing = scope[3] if len(scope) > 3 else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        path = environ.get("PATH_INFO", "")
        self.service = self.operation = ""
        if target.startswith(COGNITO):
            self.service, self.operation = "cognito-idp", target[len(COGNITO) :]
        elif target.startswith(CLOUDWATCH):
            self.service, self.operation = "cloudwatch", target[len(CLOUDWATCH) :]
        elif self.signing in ("ses", "email") and path.startswith("/v2/email/account"):
            self.service = "sesv2"
            self.operation = "GetAccount" if environ.get("REQUEST_METHOD") == "GET" else ""
        elif self.signing in ("ses", "email") and not path.startswith("/v2/"):
            self.service = "ses"
        self._raw: bytes | None = None
        if self.service == "ses":
            self.operation = self.form().get("Action", "")

    @property
    def account(self) -> str:
        found = _accounts.get(self.key_id)
        if found is None:
            found = _accounts[self.key_id] = get_account_id_from(self.key_id)
        return found

    def raw(self) -> bytes:
        """The body, read once and put back for what comes after."""
        if self._raw is None:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
            self._raw = self.environ["wsgi.input"].read(length) if length else b""
            self.environ["wsgi.input"] = io.BytesIO(self._raw)
        return self._raw

    def json(self) -> dict[str, Any]:
        try:
            body = json.loads(self.raw() or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.raw().decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def recipients(self) -> list[str]:
        """To, Cc and Bcc of a send (SendRawEmail: its Destinations)."""
        lists = ("ToAddresses", "CcAddresses", "BccAddresses")
        prefixes = (*(f"Destination.{x}.member." for x in lists), "Destinations.member.")
        return [v for k, v in sorted(self.form().items()) if k.startswith(prefixes)]


class Front:
    """The quotas of one local AWS: its buckets and the sends of the last 24 hours."""

    def __init__(self, overrides: Mapping[str, float], sandbox: bool, default_region: str) -> None:
        self.overrides = dict(overrides)
        self.sandbox = sandbox
        self.default_region = default_region
        self._buckets: dict[tuple[Any, ...], Bucket] = {}
        self._sent: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self.refused: Counter[tuple[str, str, str, str]] = Counter()

    def limit(self, key: str) -> float:
        if key in self.overrides:
            return float(self.overrides[key])
        if not self.sandbox and key == "ses.sending_quota":
            return PRODUCTION_SEND_QUOTA
        if not self.sandbox and key == "ses.sending_rate":
            return PRODUCTION_SEND_RATE
        return QUOTAS[key].default

    # -- request rates, as requests arrive --------------------------------------------------
    def rated(self, app: WSGIApp) -> WSGIApp:
        def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == REFUSALS_PATH:
                return self._refusals(start_response)
            if environ.get("PATH_INFO") == SANDBOX_PATH and environ["REQUEST_METHOD"] == "POST":
                return self._set_sandbox(environ, start_response)
            request = Request(environ, self.default_region)
            refused = self._over_rate(request) if request.operation else None
            if refused is not None:
                return self._refuse(start_response, request, "rate", *refused)
            return app(environ, start_response)

        return handle

    def _over_rate(self, request: Request) -> tuple[str, str] | None:
        service, operation = request.service, request.operation
        wanted: list[tuple[tuple[Any, ...], float]] = []
        refusal: tuple[str, str] | None = None
        for quota in quotas.rates_of(service, operation):
            where = (request.account, request.region)
            refusal = quota.error
            if quota.per_operation:  # each action at its own rate
                wanted.append(((quota.key, *where, operation), self.limit(quota.key)))
                continue
            wanted.append(((quota.key, *where), self.limit(quota.key)))
            pool = request.json().get("UserPoolId") if quota.per_pool else None
            if pool:
                wanted.append(((quota.key, *where, pool, operation), quota.per_pool or 0.0))
        if not wanted:
            return None
        with self._lock:
            now = time.monotonic()
            buckets = [self._bucket(key, rate) for key, rate in wanted]
            if not all(b.available(now) for b in buckets):
                return refusal
            for bucket in buckets:
                bucket.take()
        return None

    def _bucket(self, key: tuple[Any, ...], rate: float) -> Bucket:
        found = self._buckets.get(key)
        if found is None or found.rate != rate:
            found = self._buckets[key] = Bucket(rate)
        return found

    # -- resource counts and sends, under moto's lock -------------------------------------
    def counted(self, app: WSGIApp) -> WSGIApp:
        def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = Request(environ, self.default_region)
            if request.operation in ("GetSendQuota", "GetAccount"):
                return self._send_quota(request, start_response)
            quota = quotas.made_by(request.service, request.operation)
            full = quota is not None and quota.enforced and self._full(quota, request)
            if quota is not None and full:
                return self._refuse(start_response, request, "count", *quota.error)
            if request.service == "ses" and request.operation in quotas.SES_SENDS:
                return self._send(app, request, start_response)
            return app(environ, start_response)

        return handle

    def _full(self, quota: quotas.Quota, request: Request) -> bool:
        return self._count(quota, request) >= self.limit(quota.key)

    def _count(self, quota: quotas.Quota, request: Request) -> int:
        account, region = request.account, request.region
        if quota.key == "cognito.app_clients_per_user_pool":
            pool = cognitoidp_backends[account][region].user_pools.get(
                str(request.json().get("UserPoolId"))
            )
            return len(pool.clients) if pool is not None else 0
        if quota.key == "cognito.user_pools_per_region":
            return len(cognitoidp_backends[account][region].user_pools)
        if quota.key == "ses.templates_per_region":
            return len(ses_backends[account][region].templates)
        return 0

    def _send(
        self, app: WSGIApp, request: Request, start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        recipients = request.recipients()
        if self.sandbox:
            backend = ses_backends[request.account][request.region]
            unverified = [
                r
                for r in recipients
                if not r.lower().endswith(SIMULATOR) and not backend._is_verified_address(r)
            ]
            if unverified:
                code, message = quotas.SES_SANDBOX
                text = message.format(
                    region=request.region.upper(), identities=", ".join(unverified)
                )
                return self._refuse(start_response, request, "sandbox", code, text)
        count = len(recipients) or 1
        where = (request.account, request.region)
        with self._lock:
            now = time.monotonic()
            if self._sent_since(where, now) + count > self.limit("ses.sending_quota"):
                return self._refuse(
                    start_response, request, "daily", *quotas.SES_DAILY, locked=True
                )
            bucket = self._bucket(("ses.sending_rate", *where), self.limit("ses.sending_rate"))
            if not bucket.available(now, count):
                return self._refuse(start_response, request, "rate", *quotas.SES_RATE, locked=True)
            bucket.take(count)
        answer = Answer.of(app, request.environ)
        if answer.ok:
            with self._lock:
                self._sent.setdefault(where, deque()).append((time.monotonic(), count))
        return answer.send(start_response)

    def _refuse(
        self,
        start_response: Callable[..., Any],
        request: Request,
        reached: str,
        code: str,
        message: str,
        locked: bool = False,
    ) -> Iterable[bytes]:
        """AWS's error, counted by what was `reached` (`locked`: the caller holds the lock)."""
        key = (request.service, request.operation, code, reached)
        if locked:
            self.refused[key] += 1
        else:
            with self._lock:
                self.refused[key] += 1
        return _error(start_response, request, code, message)

    def _refusals(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            rows = [
                {"service": s, "operation": o, "code": c, "reached": r, "count": n}
                for (s, o, c, r), n in sorted(self.refused.items())
            ]
        return _respond(start_response, "200 OK", "application/json", json.dumps(rows))

    def _set_sandbox(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        wanted, figures = body.get("sandbox"), body.get("quotas", self.overrides)
        if not isinstance(wanted, bool) or not isinstance(figures, dict):
            text = "sandbox: bool; quotas: {key: figure}"
            return _respond(start_response, "400 Bad Request", "text/plain", text)
        with self._lock:
            before = {"sandbox": self.sandbox, "quotas": self.overrides}
            self.sandbox, self.overrides = wanted, {k: float(v) for k, v in figures.items()}
        return _respond(start_response, "200 OK", "application/json", json.dumps(before))

    def _sent_since(self, where: tuple[str, str], now: float) -> int:
        sent = self._sent.setdefault(where, deque())
        while sent and sent[0][0] <= now - DAY:
            sent.popleft()
        return sum(n for _, n in sent)

    def _send_quota(self, request: Request, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """GetSendQuota (SES v1) and GetAccount (SESv2): the quotas this front enforces."""
        with self._lock:
            sent = self._sent_since((request.account, request.region), time.monotonic())
        daily, rate = self.limit("ses.sending_quota"), self.limit("ses.sending_rate")
        if request.service == "sesv2":
            body = {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": not self.sandbox,
                "SendingEnabled": True,
                "SendQuota": {
                    "Max24HourSend": daily,
                    "MaxSendRate": rate,
                    "SentLast24Hours": float(sent),
                },
            }
            return _respond(start_response, "200 OK", "application/json", json.dumps(body))
        xml = (
            f'<GetSendQuotaResponse xmlns="{SES_XMLNS}"><GetSendQuotaResult>'
            f"<SentLast24Hours>{float(sent)}</SentLast24Hours>"
            f"<Max24HourSend>{daily}</Max24HourSend><MaxSendRate>{rate}</MaxSendRate>"
            f"</GetSendQuotaResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></GetSendQuotaResponse>"
        )
        return _respond(start_response, "200 OK", "text/xml", xml)


def _respond(
    start_response: Callable[..., Any], status: str, content_type: str, text: str
) -> Iterable[bytes]:
    raw = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(raw)))])
    return [raw]


def _error(
    start_response: Callable[..., Any], request: Request, code: str, message: str
) -> Iterable[bytes]:
    """An error as the service's protocol carries it: JSON (Cognito, SESv2, CloudWatch) or
    XML (SES). CloudWatch's JSON is query-compatible: its code rides in x-amzn-query-error."""
    if request.service == "ses":
        xml = (
            f'<ErrorResponse xmlns="{SES_XMLNS}"><Error><Type>Sender</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return _respond(start_response, "400 Bad Request", "text/xml", xml)
    raw = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
            *(
                [("x-amzn-query-error", f"{code};Sender")]
                if request.service == "cloudwatch"
                else []
            ),
            ("Content-Length", str(len(raw))),
        ],
    )
    return [raw]
